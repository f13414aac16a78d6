"""`python -m melodyjax.model.kernels`: build the compiled LSTM kernels now
(they are built on first use otherwise) and say which LSTM 'auto' runs."""

from melodyjax.model import lstm
from melodyjax.model.kernels import build

if __name__ == "__main__":
  print(f"cpu: {build.cpu_description()}")
  for impl in build.IMPLS:
    reason = build.unavailable_reason(impl)
    print(f"{impl}: " + ("built and loaded" if reason is None else reason))
  print(f"lstm_impl='auto' runs {lstm.resolve_impl('auto')[1]}")
