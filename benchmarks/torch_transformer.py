"""PyTorch reference of melodyjax's melody Transformer, for the benchmarks.

  .venv/bin/python -m benchmarks.torch_transformer   # a quick self-check

Needs the `bench` extra (torch 2.13.0 CPU). Written as a PyTorch user
writes it: the reference model's pitch and duration embeddings (128 + 32),
spatial dropout (`nn.Dropout1d`) and LayerNorm(160), a Linear to the model
width, pre-norm decoder blocks (`nn.LayerNorm`, one `nn.Linear` for q, k,
v, rotary embeddings of q and k, `F.scaled_dot_product_attention` with
`is_causal=True`, `nn.Linear` out, `nn.Dropout`; an MLP of `nn.Linear`,
GELU, `nn.Linear`, `nn.Dropout`), a final LayerNorm, Linear 128 with ReLU
and two heads: `melodyjax.model.transformer` with RoPE, unconditioned and
with independent heads. Sampling (`torch_reference.sample`) runs `step`
with a key/value cache: per block preallocated keys and values
[batch, heads, length, head_dim], one position written per note, and
attention over the positions so far.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from benchmarks import torch_reference


def rope(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
  """Rotary embedding of x [batch, heads, time, head_dim] at positions
  [time] (melodyjax's convention: the two halves of the channels)."""
  half = x.shape[-1] // 2
  frequencies = 1.0 / (10_000.0 ** (torch.arange(half) / half))
  angles = positions[:, None].float() * frequencies
  cos, sin = angles.cos(), angles.sin()
  first, second = x[..., :half], x[..., half:]
  return torch.cat(
    [first * cos - second * sin, first * sin + second * cos], dim=-1
  )


class Block(nn.Module):
  """Pre-norm: x + Attention(LN(x)), then x + MLP(LN(x))."""

  def __init__(self, width: int, heads: int, ff: int, dropout: float):
    super().__init__()
    self.heads = heads
    self.attention_norm = nn.LayerNorm(width)
    self.qkv = nn.Linear(width, 3 * width, bias=False)
    self.out = nn.Linear(width, width)
    self.mlp_norm = nn.LayerNorm(width)
    self.up = nn.Linear(width, ff)
    self.down = nn.Linear(ff, width)
    self.dropout = nn.Dropout(dropout)

  def _qkv(self, x, positions):
    batch, time, width = x.shape
    qkv = self.qkv(self.attention_norm(x))
    qkv = qkv.view(batch, time, 3, self.heads, width // self.heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [batch, heads, time, dim]
    return rope(q, positions), rope(k, positions), v

  def _rest(self, x, attended):
    batch, _, time, _ = attended.shape
    attended = attended.transpose(1, 2).reshape(batch, time, -1)
    x = x + self.dropout(self.out(attended))
    hidden = self.down(F.gelu(self.up(self.mlp_norm(x))))
    return x + self.dropout(hidden)

  def forward(self, x):
    positions = torch.arange(x.shape[1])
    q, k, v = self._qkv(x, positions)
    attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return self._rest(x, attended)

  def step(self, x, position: int, cache):
    """x [batch, 1, width] at `position`; cache (keys, values), each
    [batch, heads, length, head_dim], written in place."""
    q, k, v = self._qkv(x, torch.tensor([position]))
    keys, values = cache
    keys[:, :, position] = k[:, :, 0]
    values[:, :, position] = v[:, :, 0]
    attended = F.scaled_dot_product_attention(
      q, keys[:, :, : position + 1], values[:, :, : position + 1]
    )
    return self._rest(x, attended)


class TorchMelodyTransformer(torch_reference.TorchMelodyModel):
  """The reference model's streams and heads around the decoder."""

  def __init__(
    self,
    pitch_vocab_size: int,
    duration_vocab_size: int,
    width: int = 128,
    layers: int = 4,
    heads: int = 4,
    ff: int = 512,
    dropout: float = 0.1,
  ):
    super().__init__(pitch_vocab_size, duration_vocab_size, lstm_sizes=())
    self.width, self.num_heads = width, heads
    self.project = nn.Linear(self.norm.normalized_shape[0], width)
    self.blocks = nn.ModuleList(
      Block(width, heads, ff, dropout) for _ in range(layers)
    )
    self.final_norm = nn.LayerNorm(width)
    self.dense = nn.Linear(width, self.dense.out_features)

  def forward(self, pitch, duration, last_only: bool = False):
    x = self.project(self._features(pitch, duration))
    for block in self.blocks:
      x = block(x)
    x = self.final_norm(x)
    return self._heads(x[:, -1] if last_only else x)

  def step(self, pitch, duration, state):
    """One event per melody ([B] ids); state (position, caches)."""
    position, caches = state
    x = self.project(self._features(pitch[:, None], duration[:, None]))
    for block, cache in zip(self.blocks, caches, strict=True):
      x = block.step(x, position, cache)
    pitch_logits, duration_logits = self._heads(self.final_norm(x)[:, 0])
    return pitch_logits, duration_logits, (position + 1, caches)

  def initial_state(self, batch_size: int, length: int = 1):
    shape = (batch_size, self.num_heads, length, self.width // self.num_heads)
    caches = [(torch.zeros(shape), torch.zeros(shape)) for _ in self.blocks]
    return 0, caches


def _self_check():
  torch.manual_seed(0)
  model = TorchMelodyTransformer(49, 42, width=32, layers=2, heads=4, ff=64)
  batch_size, seq_len = 3, 12
  pitch = torch.randint(4, 49, (batch_size, seq_len))
  duration = torch.randint(4, 42, (batch_size, seq_len))
  model.eval()
  with torch.no_grad():
    pitch_logits, duration_logits = model(pitch, duration)
    state = model.initial_state(batch_size, seq_len)
    for t in range(seq_len):
      p, d, state = model.step(pitch[:, t], duration[:, t], state)
      assert torch.allclose(p, pitch_logits[:, t], atol=1e-4)
      assert torch.allclose(d, duration_logits[:, t], atol=1e-4)
  step = torch_reference.make_train_step(model, "all")
  batch = {
    "pitch": pitch,
    "duration": duration,
    "target_pitch": pitch,
    "target_duration": duration,
  }
  losses = [float(step(batch)) for _ in range(5)]
  assert losses[-1] < losses[0], losses
  ids = torch_reference.sample(model, 2, 8)[0]
  assert ids.shape == (2, 8) and int(ids.min()) >= torch_reference.EOS_ID
  print("torch_transformer: ok")


if __name__ == "__main__":
  _self_check()
