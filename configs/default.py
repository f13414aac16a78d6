"""Default config: ESAC, the seed's multi-stream LSTM, objective 'all'.

  python train_main.py --config=configs/default.py --workdir=/tmp/mj/default

Converts ESAC to MIDI and builds its dataset on first use. 20,000 steps of
64 windows of 64 events (about 130 epochs of ESAC's 9,838 training windows):
about 35 minutes on a quiet 2-core CPU, where the 1,500 steps of
configs/cpu.py take 2m37s.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Fine-tuning: start from this run's parameters (WORKDIR, WORKDIR:STEP or
  # a .mjx file; its best step by default), not its optimizer state.
  config.init_from = ""

  # How MIDI files become token sequences (melodyjax.data.dataset.CorpusConfig).
  config.data = data = ml_collections.ConfigDict()
  data.midi_dir = "~/.cache/melodyjax/esac_midi"  # folder of MIDI files
  data.dataset_dir = "~/.cache/melodyjax/datasets/esac"  # cached dataset
  data.grid = 12  # quantization steps per quarter note
  data.polyphony = "chord"  # same-onset notes: 'chord' | 'top' | 'reject'
  data.tracks = "merge"  # 'merge' all non-drum tracks | 'melody' part
  data.normalize_key = True  # transpose songs to C major / A minor
  data.transpositions = ()  # augmentation shifts of train songs, semitones
  data.min_notes = 4  # shorter songs are dropped, in note events
  data.max_notes = 0  # longer songs are dropped, in note events (0: no cap)
  data.min_count = 1  # rarer training tokens map to unk
  data.min_label_songs = 5  # rarer labels (time signature, style) unknown
  data.valid_fraction = 0.05  # share of songs, by a hash of the path
  data.test_fraction = 0.05  # share of songs, by a hash of the path
  # Fine-tuning: tokenize with another run's vocabularies (WORKDIR or .mjx;
  # set by init_from); more unknown events than this share is an error.
  data.vocab_from = ""
  data.max_unk_share = 0.02  # of events per stream

  # The reference architecture (exact sizes of the seed model).
  config.model = model = ml_collections.ConfigDict()
  model.pitch_embed_dim = 128
  model.duration_embed_dim = 32
  model.spatial_dropout = 0.2  # share of feature channels dropped
  model.lstm_sizes = (256, 128, 128)
  model.dense_size = 128  # shared Dense with ReLU before both heads
  # The LSTM's implementation, same math: 'auto' (the fastest here: the
  # compiled CPU kernel, cuDNN on a GPU), 'kernel', 'onednn', 'cudnn',
  # 'fused' (XLA, hand-written backward) or 'scan' (XLA, autodiff).
  model.lstm_impl = "auto"
  model.dtype = "auto"  # compute dtype: 'auto' = bfloat16 on GPU/TPU, else f32
  # Conditioning (off: the seed's model). Each adds embedded inputs,
  # concatenated with the pitch and duration embeddings.
  model.condition_metre = False  # bar position and time signature of onsets
  model.condition_mode = False  # major / minor of the song
  model.condition_style = False  # the song's top-level corpus subfolder
  # The duration head also reads the pitch of the event it predicts
  # (off: the seed's independent heads); see model/model.py.
  model.duration_given_pitch = False
  model.position_embed_dim = 16  # bar position embedding width
  model.time_signature_embed_dim = 8
  model.mode_embed_dim = 4
  model.style_embed_dim = 8
  model.max_bar_steps = 192  # positions in grid steps (16 quarters at 12)

  config.train = train = ml_collections.ConfigDict()
  train.objective = "all"  # 'all': every position; 'last': the seed's
  train.seq_len = 64  # events per window
  # Carry each lane's LSTM state from one window of a song to the next
  # (truncated backpropagation through time; objective 'all' only).
  train.carry_state = False
  train.batch_size = 64  # global batch, split across devices and hosts
  train.num_train_steps = 20_000  # optimizer steps
  train.learning_rate = 2e-3  # peak, after warm-up
  train.warmup_steps = 500  # linear warm-up, in optimizer steps
  train.decay = "cosine"  # 'cosine' to end_lr_fraction, or 'constant'
  train.end_lr_fraction = 0.05  # final learning rate / peak
  train.weight_decay = 0.0  # decoupled (AdamW); 0 is Adam
  train.grad_clip_norm = 1.0  # global norm; 0 disables clipping
  train.parallel = "jit"  # 'jit' (NamedSharding mesh) or 'pmap'
  # Exponential moving average of the parameters, in [0, 1) (0: off). When
  # on, the average is what validation (so the best step), evaluation,
  # sampling, export and fine-tuning read; it equals the parameters until
  # optimizer step ema_start_step, then follows them with this decay.
  train.ema_decay = 0.0
  train.ema_start_step = 0
  train.log_every_steps = 50
  train.eval_every_steps = 1000
  train.checkpoint_every_steps = 1000
  train.sample_every_steps = 5000  # also at the last step; 0: only there
  train.progress = True  # console progress bar (process 0)

  # Melodies sampled while training, into workdir/samples/<step>/.
  config.sample = sample = ml_collections.ConfigDict()
  sample.num_outputs = 4  # melodies per sampled step
  sample.num_notes = 64  # events after bos at most (eos may end a melody)
  sample.temperature = 1.0  # softmax temperature of both heads
  sample.top_p = 1.0  # nucleus mass of both heads (1: all tokens)
  sample.seed = 0  # the same seed at every step: the same draws, compared
  sample.tempo_bpm = 100.0  # quarter notes per minute (MIDI and WAV)
  # Controls (README, "Ask for a melody"); '' and 0: the run's default / off.
  sample.time_signature = ""  # '3/4': bars (and metre conditioning)
  sample.mode = ""  # 'major' | 'minor' (a mode-conditioned run)
  sample.style = ""  # a style label of a style-conditioned run
  sample.key = ""  # 'D': transposed from the normalised key
  sample.bars = 0  # stop at the end of this bar (0: no limit)
  sample.end_on_tonic = False  # the last note is the tonic
  sample.beam_size = 1  # beam search: melodies kept per step
  sample.branch_factor = 1  # beam search: continuations per kept melody
  sample.steps_per_iteration = 1  # beam search: events between prunings
  sample.best_of = 1  # sample this many, keep the likeliest

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 256  # windows per evaluation batch (global)

  config.checkpoint = ml_collections.ConfigDict()
  config.checkpoint.max_to_keep = 3  # newest checkpoints kept
  config.checkpoint.keep_best = 1  # lowest validation loss also kept
  config.checkpoint.async_save = True
  return config
