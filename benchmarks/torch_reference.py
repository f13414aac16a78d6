"""PyTorch reference of melodyjax's model, for the benchmarks only.

  .venv/bin/python -m benchmarks.torch_reference   # a quick self-check

Needs the `bench` extra (`pip install -e '.[bench]'`, torch 2.13.0 CPU).
The same layers as `melodyjax.model.MelodyModel`: pitch and duration
embeddings (128 + 32), spatial dropout (one channel mask per sequence, as
`nn.Dropout1d` on [batch, channels, time]), LayerNorm(160), nn.LSTM 256, 128,
128 (batch first), Linear 128 with ReLU and two linear heads; Adam with
global-norm gradient clipping, eager mode. Sampling carries (h, c) through
the three LSTMs one note at a time and draws both streams with
`torch.multinomial`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# Reserved ids, as in melodyjax.tokens.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3


class TorchMelodyModel(nn.Module):
  """Embeddings, spatial dropout, LayerNorm, stacked nn.LSTM, two heads."""

  def __init__(
    self,
    pitch_vocab_size: int,
    duration_vocab_size: int,
    pitch_embed_dim: int = 128,
    duration_embed_dim: int = 32,
    spatial_dropout: float = 0.2,
    lstm_sizes: tuple[int, ...] = (256, 128, 128),
    dense_size: int = 128,
  ):
    super().__init__()
    self.pitch_embed = nn.Embedding(pitch_vocab_size, pitch_embed_dim)
    self.duration_embed = nn.Embedding(duration_vocab_size, duration_embed_dim)
    input_dim = pitch_embed_dim + duration_embed_dim
    self.dropout = nn.Dropout1d(spatial_dropout)
    self.norm = nn.LayerNorm(input_dim)
    lstms = []
    d = input_dim
    for h in lstm_sizes:
      lstms.append(nn.LSTM(d, h, batch_first=True))
      d = h
    self.lstms = nn.ModuleList(lstms)
    self.dense = nn.Linear(d, dense_size)
    self.pitch_head = nn.Linear(dense_size, pitch_vocab_size)
    self.duration_head = nn.Linear(dense_size, duration_vocab_size)

  def _features(self, pitch, duration):
    x = torch.cat([self.pitch_embed(pitch), self.duration_embed(duration)], -1)
    # Spatial dropout: Dropout1d zeroes whole channels of [batch, C, time].
    x = self.dropout(x.transpose(1, 2)).transpose(1, 2)
    return self.norm(x)

  def _heads(self, h):
    h = F.relu(self.dense(h))
    return self.pitch_head(h), self.duration_head(h)

  def forward(self, pitch, duration, last_only: bool = False):
    """Logits at every position ([B, T, V]) or only the last ([B, V])."""
    x = self._features(pitch, duration)
    for lstm in self.lstms:
      x, _ = lstm(x)
    if last_only:
      x = x[:, -1]
    return self._heads(x)

  def step(self, pitch, duration, state):
    """One event per melody ([B] ids) with the carried (h, c) per layer.

    Uses the nn.LSTM weights through `torch._VF.lstm_cell` (what
    nn.LSTMCell runs): on CPU it is faster per note than nn.LSTM on a
    sequence of length 1.
    """
    x = self._features(pitch[:, None], duration[:, None])[:, 0]
    new_state = []
    for lstm, (h, c) in zip(self.lstms, state, strict=True):
      h, c = torch._VF.lstm_cell(
        x,
        (h, c),
        lstm.weight_ih_l0,
        lstm.weight_hh_l0,
        lstm.bias_ih_l0,
        lstm.bias_hh_l0,
      )
      new_state.append((h, c))
      x = h
    pitch_logits, duration_logits = self._heads(x)
    return pitch_logits, duration_logits, new_state

  def step_lstm(self, pitch, duration, state):
    """`step` through nn.LSTM on sequences of length 1 (for comparison)."""
    x = self._features(pitch[:, None], duration[:, None])
    new_state = []
    for lstm, (h, c) in zip(self.lstms, state, strict=True):
      x, (h, c) = lstm(x, (h[None], c[None]))
      new_state.append((h[0], c[0]))
    pitch_logits, duration_logits = self._heads(x[:, 0])
    return pitch_logits, duration_logits, new_state

  def initial_state(self, batch_size: int, length: int = 1):
    """Zero (h, c) per layer (`length`, the notes to come, sizes a
    Transformer's cache only)."""
    del length
    return [
      (
        torch.zeros(batch_size, lstm.hidden_size),
        torch.zeros(batch_size, lstm.hidden_size),
      )
      for lstm in self.lstms
    ]


def make_train_step(
  model: TorchMelodyModel,
  objective: str,
  learning_rate: float = 2e-3,
  grad_clip_norm: float = 1.0,
  adam: str = "default",
):
  """An eager Adam step on a batch dict of int64 tensors; returns the loss.

  The loss is the mean over real (non-pad) targets of the pitch and
  duration negative log-likelihoods, as in melodyjax.train. `adam`:
  'default' (PyTorch's choice, foreach), 'fused' (one kernel for all
  parameters, CPU and CUDA) or 'foreach'.
  """
  options = {"fused": {"fused": True}, "foreach": {"foreach": True}}
  optimizer = torch.optim.Adam(
    model.parameters(), lr=learning_rate, **options.get(adam, {})
  )
  params = [p for p in model.parameters() if p.requires_grad]
  last_only = objective == "last"

  def train_step(batch):
    model.train()
    optimizer.zero_grad(set_to_none=True)
    pitch_logits, duration_logits = model(
      batch["pitch"], batch["duration"], last_only=last_only
    )
    target_pitch = batch["target_pitch"].reshape(-1)
    target_duration = batch["target_duration"].reshape(-1)
    count = (target_pitch != PAD_ID).sum().clamp(min=1)
    nll = F.cross_entropy(
      pitch_logits.reshape(-1, pitch_logits.shape[-1]),
      target_pitch,
      ignore_index=PAD_ID,
      reduction="sum",
    ) + F.cross_entropy(
      duration_logits.reshape(-1, duration_logits.shape[-1]),
      target_duration,
      ignore_index=PAD_ID,
      reduction="sum",
    )
    loss = nll / count
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip_norm)
    optimizer.step()
    return loss.detach()

  return train_step


def _reserved_bias(vocab_size: int, allow_eos: bool) -> torch.Tensor:
  bias = torch.zeros(vocab_size)
  banned = [PAD_ID, BOS_ID, UNK_ID] + ([] if allow_eos else [EOS_ID])
  bias[banned] = float("-inf")
  return bias


@torch.inference_mode()
def sample(
  model: TorchMelodyModel,
  batch_size: int,
  num_notes: int,
  generator: torch.Generator | None = None,
  use_cell: bool = True,
):
  """`num_notes` events per melody from bos, carrying (h, c); int64 ids.

  Reserved ids are masked (eos allowed in pitch only), temperature 1, no
  top-k/top-p; melodies are not stopped at eos (every note costs the same,
  as in melodyjax's scan).
  """
  model.eval()
  step = model.step if use_cell else model.step_lstm
  pitch_bias = _reserved_bias(model.pitch_head.out_features, True)
  duration_bias = _reserved_bias(model.duration_head.out_features, False)
  pitch = torch.full((batch_size,), BOS_ID, dtype=torch.long)
  duration = torch.full((batch_size,), BOS_ID, dtype=torch.long)
  state = model.initial_state(batch_size, num_notes)
  out_pitch = torch.empty(batch_size, num_notes, dtype=torch.long)
  out_duration = torch.empty(batch_size, num_notes, dtype=torch.long)
  for t in range(num_notes):
    pitch_logits, duration_logits, state = step(pitch, duration, state)
    pitch = torch.multinomial(
      F.softmax(pitch_logits + pitch_bias, -1), 1, generator=generator
    )[:, 0]
    duration = torch.multinomial(
      F.softmax(duration_logits + duration_bias, -1), 1, generator=generator
    )[:, 0]
    out_pitch[:, t] = pitch
    out_duration[:, t] = duration
  return out_pitch, out_duration


def _self_check():
  torch.manual_seed(0)
  model = TorchMelodyModel(49, 42)
  batch_size, seq_len = 4, 16
  pitch = torch.randint(4, 49, (batch_size, seq_len))
  duration = torch.randint(4, 42, (batch_size, seq_len))
  model.eval()
  with torch.no_grad():
    pitch_logits, duration_logits = model(pitch, duration)
    state = model.initial_state(batch_size)
    for t in range(seq_len):
      p, d, state = model.step(pitch[:, t], duration[:, t], state)
    assert torch.allclose(p, pitch_logits[:, -1], atol=1e-4)
    assert torch.allclose(d, duration_logits[:, -1], atol=1e-4)
  for objective in ("all", "last"):
    step = make_train_step(model, objective)
    batch = {
      "pitch": pitch,
      "duration": duration,
      "target_pitch": pitch if objective == "all" else pitch[:, -1],
      "target_duration": duration if objective == "all" else duration[:, -1],
    }
    losses = [float(step(batch)) for _ in range(5)]
    assert losses[-1] < losses[0], losses
  ids = sample(model, 3, 8)[0]
  assert ids.shape == (3, 8) and int(ids.min()) >= EOS_ID
  print("torch_reference: ok")


if __name__ == "__main__":
  _self_check()
