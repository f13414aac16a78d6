# melodyjax: the two commands that matter are `make run` and `make test`.
# Each sets itself up from nothing but python3 and make.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The cache folder, by the rule of melodyjax.files.cache_dir.
CACHE ?= $(or $(MELODYJAX_CACHE),$(HOME)/.cache/melodyjax)
ESAC_MIDI := $(CACHE)/esac_midi
ESAC_DATA := $(CACHE)/datasets/esac

.PHONY: run test install sysdeps soundfont browser lint bench abcjs clean-venv

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[corpus,dev]'
	$(PY) -m pip install -q --no-deps 'tinysoundfont>=0.3.7' \
	  || echo "tinysoundfont not installed; WAV previews use the additive synth"
	touch $@

install: $(VENV)/.installed

# Optional: tcmalloc, which the mains preload (melodyjax/cli/runtime.py) so that
# XLA:CPU stops re-faulting its buffers at every step. Installed only where
# apt-get runs as root; elsewhere the mains fall back to glibc's huge-page
# malloc, and nothing fails.
sysdeps:
	@if ! ldconfig -p 2>/dev/null | grep -q libtcmalloc_minimal.so.4 \
	  && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing libtcmalloc-minimal4 (optional)"; \
	  (apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1 \
	   || (apt-get update -q >/dev/null 2>&1 \
	       && apt-get install -y -q libtcmalloc-minimal4 >/dev/null 2>&1)) \
	  || echo "tcmalloc not installed; using glibc's huge-page malloc"; \
	fi

# Optional: a General MIDI soundfont (Debian's fluid-soundfont-gm, 148 MB),
# which the WAV previews play through TinySoundFont (melodyjax/listening/
# audio.py). Installed only where apt-get runs as root; elsewhere the
# previews use the small additive synthesizer, and nothing fails.
soundfont:
	@if [ ! -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] \
	  && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing fluid-soundfont-gm (optional)"; \
	  (DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	     --no-install-recommends fluid-soundfont-gm >/dev/null 2>&1 \
	   || (apt-get update -q >/dev/null 2>&1 \
	       && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	          --no-install-recommends fluid-soundfont-gm >/dev/null 2>&1)) \
	  || echo "no soundfont installed; WAV previews use the additive synth"; \
	fi

RUN_DIR ?= runs/esac_cpu

# Main job on the default corpus: ESAC (from music21) -> MIDI -> dataset
# (round trip checked, report printed) -> a few minutes of CPU training.
run: install sysdeps soundfont
	$(VENV)/bin/melodyjax-convert --out $(ESAC_MIDI)
	$(VENV)/bin/melodyjax-corpus --midi_dir $(ESAC_MIDI) --out $(ESAC_DATA) \
	  --check_roundtrip --export_jsonl $(ESAC_DATA)/songs.jsonl
	$(PY) train_main.py --config=configs/cpu.py --workdir=$(RUN_DIR) \
	  --config.data.midi_dir=$(ESAC_MIDI) --config.data.dataset_dir=$(ESAC_DATA)

# The audition page's test drives a real browser: Debian's Chromium and its
# driver, installed here when missing and apt-get can (as root, as in CI).
# Elsewhere that one test is skipped and says why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; \
	then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install \
	    -y -qq --no-install-recommends chromium chromium-driver >/dev/null; \
	else \
	  echo "no chromium and no root apt-get: the browser test will skip"; \
	fi

test: install browser soundfont
	$(PY) -m ruff check melodyjax tests configs benchmarks *.py
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check melodyjax tests configs benchmarks *.py

# All benchmarks, one table; the PyTorch reference needs the `bench` extra
# (see BENCHMARKS.md). Run `make run` first: it converts ESAC.
bench: install sysdeps
	$(PY) -m benchmarks.bench_all --midi_dir $(ESAC_MIDI)

# The audition page draws notation with abcjs, committed as package data
# (melodyjax/listening/vendor/, 512 KB, MIT), so that nothing needs npm or the
# network to build, test or run. This fetches the pinned version again with
# npm and checks it is byte for byte the committed file (or, after changing
# the two lines below, replaces it).
ABCJS_VERSION := 6.7.2
ABCJS_SHA256 := 3290ef44c918d5e882029d3a47ad3dd63c16c8819da5abe921f3d1e642b4f4f0
ABCJS_DIR := melodyjax/listening/vendor
abcjs:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	(cd "$$tmp" && npm pack -q abcjs@$(ABCJS_VERSION) >/dev/null && \
	 tar xzf abcjs-$(ABCJS_VERSION).tgz package/dist/abcjs-basic-min.js \
	   package/LICENSE.md && \
	 echo "$(ABCJS_SHA256)  package/dist/abcjs-basic-min.js" \
	   | sha256sum -c -) && \
	cp "$$tmp/package/dist/abcjs-basic-min.js" $(ABCJS_DIR)/ && \
	cp "$$tmp/package/LICENSE.md" $(ABCJS_DIR)/abcjs-LICENSE.md && \
	git status --short $(ABCJS_DIR)

clean-venv:
	rm -rf $(VENV)
