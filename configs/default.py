"""Default config: the ESAC corpus and the seed's multi-stream LSTM.

Build the dataset (the training issue adds `train_main.py` on top):
  python -m melodyjax.corpus --midi_dir ~/.cache/melodyjax/esac_midi \
    --out ~/.cache/melodyjax/datasets/esac
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0

  # How MIDI files become token sequences (melodyjax.corpus.CorpusConfig).
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
  data.valid_fraction = 0.05  # share of songs, by a hash of the path
  data.test_fraction = 0.05  # share of songs, by a hash of the path

  # The reference architecture (exact sizes of the seed model).
  config.model = model = ml_collections.ConfigDict()
  model.pitch_embed_dim = 128
  model.duration_embed_dim = 32
  model.spatial_dropout = 0.2  # share of feature channels dropped
  model.lstm_sizes = (256, 128, 128)
  model.dense_size = 128  # shared Dense with ReLU before both heads
  return config
