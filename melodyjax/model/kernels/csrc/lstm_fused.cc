// Our own fused LSTM layer (CPU, float32) behind XLA FFI custom calls, in
// two instruction sets chosen at run time: AVX2 + FMA (compiled for any
// x86-64-v3 CPU) and AVX-512 (F, DQ, BW, VL; compiled under a target
// pragma, used when cpuid says the CPU and the OS have it). The attribute
// `isa` (0 the best here, 1 AVX2, 2 AVX-512; MELODYJAX_LSTM_ISA in ops.py)
// forces one, so the AVX2 path is tested on AVX-512 machines too.
//
// The layer (lstm_fused_layer.cc, included once per instruction set):
//   forward, per step t:  z = [x_t, h_{t-1}] @ [Wi; Wh] + b, the input
//     projection folded into the step's GEMM, then the four gates, c_t and
//     h_t in the epilogue of its register tiles;
//   backward, per step t:  dz_{t+1} @ [Wh^T | Wi^T] gives dh (whose
//     epilogue makes dc and the gates' dz_t) and dx_{t+1} in one GEMM;
//     after the loop, the weight and bias gradients as one GEMM over all
//     steps. Nothing of shape [T, B, 4H] goes back to XLA but the saved
//     gates.
// The kernels are repacked once per call into column panels (forward: the
// gates i | g, then f | o, of L hidden units; backward: 2L columns of Wh^T
// or Wi^T); the micro-kernels are register tiles of up to 6 x 16 (AVX2) or
// 12 x 32 (AVX-512) floats.
//
// The previous form, kept to measure against (MELODYJAX_LSTM_FOLD=0) and
// for `ops.lstm_recurrence`, takes the projection from XLA: AVX2 only.
//   forward, per step t:   z = projected[t] + h[t-1] @ Wh, then the four
//     gates, c[t] and h[t] in the same pass over a register tile of z;
//   backward, per step t:  dh = d_hs[t] + dz[t+1] @ Wh^T, then dc and the
//     four gates' dz[t] in the same pass.
//
// Threads: the work of a step is cut into `chunks` (a few per thread); in
// every step each thread takes its own chunks first, then any other chunk
// nobody took yet (an atomic claim), and all wait for the step to complete
// (a spin barrier) before the next step reads h[t]. The second thread is a
// task on XLA's own intra-op thread pool (no OpenMP, no extra threads). If
// that task starts late or never, the calling thread does every chunk
// alone, so a busy pool (several CPU devices at once) costs speed, never a
// deadlock.
//
// Handlers (all buffers row-major, time-major):
//   MjxLstmLayerFwd(x [T,B,D], Wi [D,4H], Wh [H,4H], b [4H], h0 [B,H],
//       c0 [B,H]) -> hs [T,B,H], cs [T,B,H], gates [T,B,4H] (activated
//       i, f, g, o)
//   MjxLstmLayerFwdInfer(same inputs) -> hs, cs
//   MjxLstmLayerBwd(x, Wi, Wh, h0, c0, hs, cs, gates, d_hs [T,B,H], d_hT,
//       d_cT) -> dx [T,B,D], dWi, dWh, db, dh0 [B,H], dc0 [B,H]
//   MjxFusedLstmFwd(projected [T,B,4H], Wh [H,4H], h0 [B,H], c0 [B,H])
//       -> hs [T,B,H], cs [T,B,H], gates [T,B,4H]
//   MjxFusedLstmFwdInfer(same inputs) -> hs, cs
//   MjxFusedLstmBwd(Wh, c0, cs, gates, d_hs [T,B,H], d_hT, d_cT)
//       -> dz [T,B,4H] (= d projected), dh0 [B,H], dc0 [B,H]
// Attributes (int64): `threads` 0 = automatic, otherwise at most that
// many; `isa` (the layer handlers) as above.

#include <immintrin.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// ---------------------------------------------------------------------------
// Vectorized exp, sigmoid and tanh (Cephes-style polynomials; relative
// error about 1e-7 on the whole float range, checked by the tests).

inline __m256 Exp(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)),
                    _mm256_set1_ps(88.3f));
  // x = n ln2 + r, |r| <= ln2 / 2, ln2 split in two for exactness.
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(1.0f));
  // Times 2^n, built in the exponent bits.
  __m256i e = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

inline __m256 Sigmoid(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, Exp(_mm256_sub_ps(
                                                   _mm256_setzero_ps(), x))));
}

inline __m256 Tanh(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 ax = _mm256_andnot_ps(sign, x);
  // |x| < 0.625: odd polynomial.
  __m256 z = _mm256_mul_ps(x, x);
  __m256 p = _mm256_set1_ps(-5.70498872745e-3f);
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(2.06390887954e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-5.37397155531e-2f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(1.33314422036e-1f));
  p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(-3.33332819422e-1f));
  __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), x, x);
  // Otherwise 1 - 2 / (exp(2|x|) + 1), with the sign of x.
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 e = Exp(_mm256_add_ps(ax, ax));
  __m256 big = _mm256_sub_ps(
      one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
  big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
  return _mm256_blendv_ps(small, big,
                          _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f),
                                        _CMP_GE_OQ));
}

// Masked load/store of the first `n` (1..8) lanes; n >= 8 is a plain one.
inline __m256i LaneMask(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256 Load(const float* p, int n) {
  return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, LaneMask(n));
}
inline void Store(float* p, __m256 v, int n) {
  if (n >= 8)
    _mm256_storeu_ps(p, v);
  else
    _mm256_maskstore_ps(p, LaneMask(n), v);
}

// ---------------------------------------------------------------------------
// Micro-kernels: C = A[MR rows, K] (row stride lda) @ panel[K][8 NV].
// Written with one named variable per accumulator: with arrays of __m256,
// GCC 12 spilled the accumulators to the stack in every iteration.

#define MJX_FMA_ROW(r, a, bv, v) \
  if constexpr (MR > r) c##r##v = _mm256_fmadd_ps(a, bv, c##r##v)

// MR <= 3 rows by 32 columns (12 accumulators, 3 broadcasts, 1 load).
template <int MR>
inline void MicroKernel32(const float* __restrict a, int64_t lda,
                          const float* __restrict panel, int64_t K,
                          float* __restrict c) {
  static_assert(MR >= 1 && MR <= 3);
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c03 = c00;
  __m256 c10 = c00, c11 = c00, c12 = c00, c13 = c00;
  __m256 c20 = c00, c21 = c00, c22 = c00, c23 = c00;
  const float* a0 = a;
  const float* a1 = a + (MR > 1 ? lda : 0);
  const float* a2 = a + (MR > 2 ? 2 * lda : 0);
  for (int64_t k = 0; k < K; ++k) {
    const float* b = panel + k * 32;
    __m256 x0 = _mm256_broadcast_ss(a0 + k);
    __m256 x1 = _mm256_broadcast_ss(a1 + k);
    __m256 x2 = _mm256_broadcast_ss(a2 + k);
    __m256 bv = _mm256_loadu_ps(b);
    MJX_FMA_ROW(0, x0, bv, 0); MJX_FMA_ROW(1, x1, bv, 0);
    MJX_FMA_ROW(2, x2, bv, 0);
    bv = _mm256_loadu_ps(b + 8);
    MJX_FMA_ROW(0, x0, bv, 1); MJX_FMA_ROW(1, x1, bv, 1);
    MJX_FMA_ROW(2, x2, bv, 1);
    bv = _mm256_loadu_ps(b + 16);
    MJX_FMA_ROW(0, x0, bv, 2); MJX_FMA_ROW(1, x1, bv, 2);
    MJX_FMA_ROW(2, x2, bv, 2);
    bv = _mm256_loadu_ps(b + 24);
    MJX_FMA_ROW(0, x0, bv, 3); MJX_FMA_ROW(1, x1, bv, 3);
    MJX_FMA_ROW(2, x2, bv, 3);
  }
  _mm256_storeu_ps(c, c00), _mm256_storeu_ps(c + 8, c01);
  _mm256_storeu_ps(c + 16, c02), _mm256_storeu_ps(c + 24, c03);
  if constexpr (MR > 1) {
    _mm256_storeu_ps(c + 32, c10), _mm256_storeu_ps(c + 40, c11);
    _mm256_storeu_ps(c + 48, c12), _mm256_storeu_ps(c + 56, c13);
  }
  if constexpr (MR > 2) {
    _mm256_storeu_ps(c + 64, c20), _mm256_storeu_ps(c + 72, c21);
    _mm256_storeu_ps(c + 80, c22), _mm256_storeu_ps(c + 88, c23);
  }
}

// MR <= 6 rows by 16 columns (12 accumulators, 2 loads, 1 broadcast);
// row r of the result goes to c + r * ldc.
template <int MR>
inline void MicroKernel16(const float* __restrict a, int64_t lda,
                          const float* __restrict panel, int64_t K,
                          float* __restrict c, int64_t ldc = 16) {
  static_assert(MR >= 1 && MR <= 6);
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00;
  __m256 c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  __m256 c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t k = 0; k < K; ++k) {
    const float* b = panel + k * 16;
    __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    __m256 x;
#define MJX_ROW16(r)                              \
  if constexpr (MR > r) {                         \
    x = _mm256_broadcast_ss(a + r * lda + k);     \
    c##r##0 = _mm256_fmadd_ps(x, b0, c##r##0);    \
    c##r##1 = _mm256_fmadd_ps(x, b1, c##r##1);    \
  }
    MJX_ROW16(0) MJX_ROW16(1) MJX_ROW16(2) MJX_ROW16(3) MJX_ROW16(4)
    MJX_ROW16(5)
#undef MJX_ROW16
  }
#define MJX_STORE16(r)                           \
  if constexpr (MR > r) {                        \
    _mm256_storeu_ps(c + r * ldc, c##r##0);      \
    _mm256_storeu_ps(c + r * ldc + 8, c##r##1);  \
  }
  MJX_STORE16(0) MJX_STORE16(1) MJX_STORE16(2) MJX_STORE16(3) MJX_STORE16(4)
  MJX_STORE16(5)
#undef MJX_STORE16
}
#undef MJX_FMA_ROW

// ---------------------------------------------------------------------------
// Steps split across threads (see the header comment).

constexpr int kMaxChunks = 16;
constexpr int kChunksPerThread = 4;  // the layer kernels' (see Chunks)

struct StepSchedule {
  int64_t steps = 0;
  int chunks = 1;
  std::atomic<int64_t> done{0};  // chunks finished, all steps together
  std::atomic<int64_t> claimed[kMaxChunks];  // last step claimed per chunk
  std::function<void(int64_t, int)> work;    // (step, chunk)
  StepSchedule() {
    for (auto& c : claimed) c.store(-1);
  }
};

inline void SpinUntil(const std::atomic<int64_t>& v, int64_t target) {
  int spins = 0;
  while (v.load(std::memory_order_acquire) < target) {
    _mm_pause();
    if (++spins > 4096) {  // partner descheduled: let it run
      sched_yield();
      spins = 0;
    }
  }
}

// One participant's loop; `first` is the chunk it prefers.
void Participate(StepSchedule& s, int first) {
  for (int64_t step = s.done.load(std::memory_order_acquire) / s.chunks;
       step < s.steps; ++step) {
    SpinUntil(s.done, step * s.chunks);  // previous step complete
    for (int i = 0; i < s.chunks; ++i) {
      int c = (first + i) % s.chunks;
      int64_t expected = step - 1;
      if (s.claimed[c].load(std::memory_order_relaxed) == expected &&
          s.claimed[c].compare_exchange_strong(expected, step)) {
        s.work(step, c);
        s.done.fetch_add(1, std::memory_order_acq_rel);
      }
    }
  }
}

// Runs work(step, chunk) for all steps in order, every chunk of a step
// before any chunk of the next, on the caller and (maybe) one pool task.
void RunSteps(ffi::ThreadPool* pool, int threads, int64_t steps, int chunks,
              std::function<void(int64_t, int)> work) {
  if (threads <= 1 || chunks <= 1 || pool == nullptr) {
    for (int64_t t = 0; t < steps; ++t)
      for (int c = 0; c < chunks; ++c) work(t, c);
    return;
  }
  auto s = std::make_shared<StepSchedule>();
  s->steps = steps;
  s->chunks = chunks;
  s->work = std::move(work);
  for (int w = 1; w < threads; ++w) {
    int first = w * chunks / threads;
    pool->Schedule([s, first] { Participate(*s, first); });
  }
  Participate(*s, 0);
  SpinUntil(s->done, steps * chunks);  // all claimed chunks finished
}

// ---------------------------------------------------------------------------
// Forward.
//
// Panel q (q < 4 ceil(H / 16)) holds, for k < H, 16 columns: gates 2(q % 2)
// and 2(q % 2) + 1 (i, f or g, o) of hidden units 8(q / 2) .. 8(q / 2) + 7
// (zero past H). Panels 2n and 2n + 1 give all four gates of 8 units.

std::vector<float> PackForward(const float* wh, int64_t H) {
  const int64_t nb = 2 * ((H + 15) / 16);  // 8-unit blocks, even count
  std::vector<float> p(2 * nb * H * 16, 0.0f);
  for (int64_t q = 0; q < 2 * nb; ++q)
    for (int64_t k = 0; k < H; ++k)
      for (int j = 0; j < 2; ++j)
        for (int l = 0; l < 8; ++l) {
          int64_t u = (q / 2) * 8 + l, g = 2 * (q % 2) + j;
          if (u < H)
            p[(q * H + k) * 16 + j * 8 + l] = wh[k * 4 * H + g * H + u];
        }
  return p;
}

struct FwdArgs {
  int64_t T, B, H;
  const float* projected;  // [T, B, 4H]
  const float* bias = nullptr;  // [4H], added in the epilogue if given
  const float* panels;
  const float* h0;
  const float* c0;
  float* hs;     // [T, B, H]
  float* cs;     // [T, B, H]
  float* gates;  // [T, B, 4H] or null
};

// z[b][64] = h_prev @ (panels 4n .. 4n+3) for all rows: one panel (16 KB
// for H = 256) at a time, so it stays in L1 across the row tiles. (Doing
// the four panels per row tile instead cycled 64 KB through L1 and made
// the GEMM twice as slow.)
void FwdGemm(const FwdArgs& a, const float* h_prev, int64_t n, float* z) {
  const int64_t H = a.H;
  for (int q = 0; q < 4; ++q) {
    const float* panel = a.panels + (4 * n + q) * H * 16;
    int64_t b = 0;
    for (; b + 6 <= a.B; b += 6)
      MicroKernel16<6>(h_prev + b * H, H, panel, H, z + b * 64 + q * 16, 64);
    float* zb = z + b * 64 + q * 16;
    const float* hb = h_prev + b * H;
    switch (a.B - b) {
      case 5: MicroKernel16<5>(hb, H, panel, H, zb, 64); break;
      case 4: MicroKernel16<4>(hb, H, panel, H, zb, 64); break;
      case 3: MicroKernel16<3>(hb, H, panel, H, zb, 64); break;
      case 2: MicroKernel16<2>(hb, H, panel, H, zb, 64); break;
      case 1: MicroKernel16<1>(hb, H, panel, H, zb, 64); break;
    }
  }
}

// Step t for hidden units 16n0 .. 16n1 - 1; z: scratch of B * 64 floats.
// Sixteen units make whole 64-byte lines of every gate in `projected` and
// `gates`.
void FwdStep(const FwdArgs& a, int64_t t, int64_t n0, int64_t n1, float* z) {
  const int64_t H = a.H, G = 4 * H, B = a.B;
  const float* h_prev = t == 0 ? a.h0 : a.hs + (t - 1) * B * H;
  const float* c_prev = t == 0 ? a.c0 : a.cs + (t - 1) * B * H;
  for (int64_t n = n0; n < n1; ++n) {
    FwdGemm(a, h_prev, n, z);
    const int64_t u0 = n * 16;
    for (int64_t b = 0; b < B; ++b) {
      const int64_t row = t * B + b;
      // Rows are 4H floats apart, each on another page, so no hardware
      // prefetcher sees them coming.
      if (b + 4 < B) {
        for (int gate = 0; gate < 4; ++gate) {
          __builtin_prefetch(a.projected + (row + 4) * G + gate * H + u0, 0);
          if (a.gates)
            __builtin_prefetch(a.gates + (row + 4) * G + gate * H + u0, 1);
        }
      }
      for (int half = 0; half < 2; ++half) {
        const int64_t u = u0 + 8 * half;
        if (u >= H) break;
        const int lanes = static_cast<int>(std::min<int64_t>(8, H - u));
        const float* p = a.projected + row * G + u;
        const float* zif = z + b * 64 + 32 * half;  // i, f of these 8 units
        const float* zgo = zif + 16;                // g, o
        __m256 pi = Load(p, lanes), pf = Load(p + H, lanes);
        __m256 pg = Load(p + 2 * H, lanes), po = Load(p + 3 * H, lanes);
        if (a.bias) {
          const float* q = a.bias + u;
          pi = _mm256_add_ps(pi, Load(q, lanes));
          pf = _mm256_add_ps(pf, Load(q + H, lanes));
          pg = _mm256_add_ps(pg, Load(q + 2 * H, lanes));
          po = _mm256_add_ps(po, Load(q + 3 * H, lanes));
        }
        __m256 i = Sigmoid(_mm256_add_ps(_mm256_loadu_ps(zif), pi));
        __m256 f = Sigmoid(_mm256_add_ps(_mm256_loadu_ps(zif + 8), pf));
        __m256 g = Tanh(_mm256_add_ps(_mm256_loadu_ps(zgo), pg));
        __m256 o = Sigmoid(_mm256_add_ps(_mm256_loadu_ps(zgo + 8), po));
        __m256 c = _mm256_fmadd_ps(f, Load(c_prev + b * H + u, lanes),
                                   _mm256_mul_ps(i, g));
        __m256 h = _mm256_mul_ps(o, Tanh(c));
        Store(a.cs + row * H + u, c, lanes);
        Store(a.hs + row * H + u, h, lanes);
        if (a.gates) {
          float* q = a.gates + row * G + u;
          Store(q, i, lanes);
          Store(q + H, f, lanes);
          Store(q + 2 * H, g, lanes);
          Store(q + 3 * H, o, lanes);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Backward.
//
// Panel n (n < ceil(H / 16)) holds, for k < 4H, 16 columns: Wh[u, k] of
// hidden units u = 16n .. 16n+15 (zero past H): dz @ Wh^T, one tile.

std::vector<float> PackBackward(const float* wh, int64_t H) {
  const int64_t nb = (H + 15) / 16, G = 4 * H;
  std::vector<float> p(nb * G * 16, 0.0f);
  for (int64_t n = 0; n < nb; ++n)
    for (int l = 0; l < 16; ++l) {
      int64_t u = n * 16 + l;
      if (u >= H) continue;
      for (int64_t k = 0; k < G; ++k) p[(n * G + k) * 16 + l] = wh[u * G + k];
    }
  return p;
}

struct BwdArgs {
  int64_t T, B, H;
  const float* panels;
  const float* c0;
  const float* cs;     // [T, B, H]
  const float* gates;  // [T, B, 4H]
  const float* d_hs;   // [T, B, H]
  const float* d_h_last;
  float* dz;   // [T, B, 4H]
  float* dh0;  // [B, H]
  float* dc;   // [B, H]: d c carried back; d_cT at first, dc0 at the end
};

// Step t (t = -1: only dh0 = dz[0] @ Wh^T), rows b0.., 16-unit panel n.
template <int MR>
void BwdRows(const BwdArgs& a, int64_t t, int64_t b0, int64_t n) {
  const int64_t H = a.H, G = 4 * H, T = a.T;
  alignas(32) float rec[MR * 16];
  if (t + 1 < T) {
    MicroKernel16<MR>(a.dz + ((t + 1) * a.B + b0) * G, G,
                       a.panels + n * G * 16, G, rec);
  } else {
    for (int r = 0; r < MR; ++r)
      for (int l = 0; l < 16; ++l) {
        int64_t u = n * 16 + l;
        rec[r * 16 + l] = u < H ? a.d_h_last[(b0 + r) * H + u] : 0.0f;
      }
  }
  for (int half = 0; half < 2; ++half) {
    const int64_t u = n * 16 + half * 8;
    if (u >= H) break;
    const int lanes = static_cast<int>(std::min<int64_t>(8, H - u));
    for (int r = 0; r < MR; ++r) {
      const int64_t b = b0 + r;
      __m256 dh = _mm256_load_ps(rec + r * 16 + half * 8);
      if (t < 0) {
        Store(a.dh0 + b * H + u, dh, lanes);
        continue;
      }
      const int64_t row = t * a.B + b;
      dh = _mm256_add_ps(dh, Load(a.d_hs + row * H + u, lanes));
      const float* q = a.gates + row * G + u;
      __m256 i = Load(q, lanes), f = Load(q + H, lanes);
      __m256 g = Load(q + 2 * H, lanes), o = Load(q + 3 * H, lanes);
      __m256 c = Load(a.cs + row * H + u, lanes);
      __m256 c_prev = Load((t == 0 ? a.c0 + b * H : a.cs + (row - a.B) * H) + u,
                           lanes);
      const __m256 one = _mm256_set1_ps(1.0f);
      __m256 tc = Tanh(c);
      __m256 dc = _mm256_fmadd_ps(
          _mm256_mul_ps(dh, o), _mm256_fnmadd_ps(tc, tc, one),
          Load(a.dc + b * H + u, lanes));
      float* out = a.dz + row * G + u;
      // d i = dc g i (1 - i); d f = dc c_prev f (1 - f);
      // d g = dc i (1 - g^2); d o = dh tanh(c) o (1 - o).
      Store(out, _mm256_mul_ps(_mm256_mul_ps(dc, g),
                               _mm256_mul_ps(i, _mm256_sub_ps(one, i))),
            lanes);
      Store(out + H, _mm256_mul_ps(_mm256_mul_ps(dc, c_prev),
                                   _mm256_mul_ps(f, _mm256_sub_ps(one, f))),
            lanes);
      Store(out + 2 * H,
            _mm256_mul_ps(_mm256_mul_ps(dc, i), _mm256_fnmadd_ps(g, g, one)),
            lanes);
      Store(out + 3 * H, _mm256_mul_ps(_mm256_mul_ps(dh, tc),
                                       _mm256_mul_ps(o, _mm256_sub_ps(one, o))),
            lanes);
      Store(a.dc + b * H + u, _mm256_mul_ps(dc, f), lanes);
    }
  }
}

void BwdStep(const BwdArgs& a, int64_t t, int64_t n0, int64_t n1) {
  for (int64_t n = n0; n < n1; ++n) {
    int64_t b = 0;
    for (; b + 6 <= a.B; b += 6) BwdRows<6>(a, t, b, n);
    switch (a.B - b) {
      case 5: BwdRows<5>(a, t, b, n); break;
      case 4: BwdRows<4>(a, t, b, n); break;
      case 3: BwdRows<3>(a, t, b, n); break;
      case 2: BwdRows<2>(a, t, b, n); break;
      case 1: BwdRows<1>(a, t, b, n); break;
    }
  }
}

// ---------------------------------------------------------------------------
// Thread count: one unless a step has enough work to pay for a barrier
// (about 1 us) and the pool has a second thread.

int ChooseThreads(int64_t requested, ffi::ThreadPool& pool, int64_t flops,
                  int64_t panels) {
  int64_t avail = std::max<int64_t>(1, pool.num_threads());
  int64_t t = requested > 0 ? requested : (flops >= (1 << 20) ? 2 : 1);
  return static_cast<int>(std::max<int64_t>(
      1, std::min({t, avail, panels, int64_t(kMaxChunks)})));
}

using F32 = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;

// The forward recurrence over `projected` (which may be `gates`: each
// element is read before it is overwritten, by the same thread).
void RunForward(ffi::ThreadPool& pool, FwdArgs& a, const float* wh,
                int64_t threads) {
  std::vector<float> panels = PackForward(wh, a.H);
  a.panels = panels.data();
  const int64_t nb = (a.H + 15) / 16;
  int nt = ChooseThreads(threads, pool, 8 * a.B * a.H * a.H, nb);
  // One z scratch per chunk (a chunk runs on one thread at a time).
  std::vector<float> scratch(nt * a.B * 64);
  float* z = scratch.data();
  const int64_t zsize = a.B * 64;
  RunSteps(&pool, nt, a.T, nt, [&a, nb, nt, z, zsize](int64_t t, int c) {
    FwdStep(a, t, nb * c / nt, nb * (c + 1) / nt, z + c * zsize);
  });
}

ffi::Error Forward(ffi::ThreadPool pool, F32 projected, F32 wh, F32 h0,
                   F32 c0, float* hs, float* cs, float* gates,
                   int64_t threads) {
  auto d = projected.dimensions();
  if (d.size() != 3 || d[2] % 4 != 0)
    return ffi::Error::InvalidArgument("projected must be [T, B, 4H]");
  FwdArgs a;
  a.T = d[0], a.B = d[1], a.H = d[2] / 4;
  if (wh.dimensions()[0] != a.H || wh.dimensions()[1] != 4 * a.H)
    return ffi::Error::InvalidArgument("recurrent kernel must be [H, 4H]");
  a.projected = projected.typed_data();
  a.h0 = h0.typed_data();
  a.c0 = c0.typed_data();
  a.hs = hs, a.cs = cs, a.gates = gates;
  RunForward(pool, a, wh.typed_data(), threads);
  return ffi::Error::Success();
}

ffi::Error FwdImpl(ffi::ThreadPool pool, F32 projected, F32 wh, F32 h0,
                   F32 c0, Out hs, Out cs, Out gates, int64_t threads) {
  return Forward(pool, projected, wh, h0, c0, hs->typed_data(),
                 cs->typed_data(), gates->typed_data(), threads);
}

ffi::Error FwdInferImpl(ffi::ThreadPool pool, F32 projected, F32 wh, F32 h0,
                        F32 c0, Out hs, Out cs, int64_t threads) {
  return Forward(pool, projected, wh, h0, c0, hs->typed_data(),
                 cs->typed_data(), nullptr, threads);
}

void RunBackward(ffi::ThreadPool& pool, BwdArgs& a, const float* wh,
                 const float* d_c_last, int64_t threads) {
  std::vector<float> panels = PackBackward(wh, a.H);
  a.panels = panels.data();
  std::memcpy(a.dc, d_c_last, a.B * a.H * sizeof(float));
  const int64_t nb = (a.H + 15) / 16;
  int nt = ChooseThreads(threads, pool, 8 * a.B * a.H * a.H, nb);
  // Steps T-1 .. 0, then -1 (dh0 only).
  RunSteps(&pool, nt, a.T + 1, nt, [&a, nb, nt](int64_t s, int c) {
    BwdStep(a, a.T - 1 - s, nb * c / nt, nb * (c + 1) / nt);
  });
}

ffi::Error BwdImpl(ffi::ThreadPool pool, F32 wh, F32 c0, F32 cs, F32 gates,
                   F32 d_hs, F32 d_h_last, F32 d_c_last, Out dz, Out dh0,
                   Out dc0, int64_t threads) {
  auto d = cs.dimensions();
  BwdArgs a;
  a.T = d[0], a.B = d[1], a.H = d[2];
  a.c0 = c0.typed_data();
  a.cs = cs.typed_data();
  a.gates = gates.typed_data();
  a.d_hs = d_hs.typed_data();
  a.d_h_last = d_h_last.typed_data();
  a.dz = dz->typed_data();
  a.dh0 = dh0->typed_data();
  a.dc = dc0->typed_data();
  RunBackward(pool, a, wh.typed_data(), d_c_last.typed_data(), threads);
  return ffi::Error::Success();
}


// ---------------------------------------------------------------------------
// The whole layer, input projection folded in (lstm_fused_layer.cc), once for
// AVX2 + FMA and once for AVX-512, chosen at run time.

#define MJX_INLINE inline __attribute__((always_inline))

struct LayerFwdArgs {
  int64_t T, B, D, H;
  const float* x;       // [T, B, D]
  const float* bias;    // [4H]
  const float* panels;  // PackLayerForward
  const float* h0;
  const float* c0;
  float* hs;     // [T, B, H]
  float* cs;     // [T, B, H]
  float* gates;  // [T, B, 4H] or null
};

struct LayerBwdArgs {
  int64_t T, B, D, H, Hp, nh;  // Hp: H padded to panels; nh: Wh^T panels
  const float* panels;         // PackLayerBackward
  const float* x;              // [T, B, D]
  const float* h0;
  const float* c0;
  const float* hs;  // [T, B, H]
  const float* cs;
  const float* gates;
  const float* d_hs;
  const float* d_h_last;
  int64_t ldz;  // dz's row stride: 4Hp and one cache line (rows 4 KiB
                // apart would fall into the same L1 set)
  float* dz;   // [T, B, ldz], zero padded
  float* dx;   // [T, B, D]
  float* dwi;  // [D, 4Hp]
  float* dwh;  // [H, 4Hp]
  float* db;   // [4Hp]
  float* dh0;  // [B, H]
  float* dc;   // [B, H]: d c carried back; d_cT at first, dc0 at the end
};

// Chunks of a step for `threads` threads over `blocks` blocks: a few per
// thread, so that one that is done early takes the next one left (each
// starts from its own share, see RunSteps), at most one per block.
inline int Chunks(int threads, int64_t blocks) {
  if (threads <= 1) return 1;
  return static_cast<int>(std::min<int64_t>(
      {blocks, int64_t(kChunksPerThread) * threads, int64_t(kMaxChunks)}));
}

// Zeroes the columns past H of each gate in rows of 4Hp (+ 16) floats:
// the epilogue writes only the H real ones, the GEMMs read all 4Hp. (The
// rest of dz is written before it is read; zeroing all of it cost a pass
// over [T, B, 4H] per call.)
inline void ZeroPadding(float* dz, int64_t rows, int64_t H, int64_t Hp) {
  if (Hp == H) return;
  const int64_t ld = 4 * Hp + 16;
  for (int64_t r = 0; r < rows; ++r)
    for (int gate = 0; gate < 4; ++gate)
      std::fill(dz + r * ld + gate * Hp + H, dz + r * ld + (gate + 1) * Hp,
                0.0f);
}

// dst [rows, 4H] = src [rows, 4Hp] without the padding of each gate.
inline void Unpad(const float* src, int64_t rows, int64_t H, int64_t Hp,
                  float* dst) {
  for (int64_t r = 0; r < rows; ++r)
    for (int gate = 0; gate < 4; ++gate)
      std::memcpy(dst + r * 4 * H + gate * H, src + r * 4 * Hp + gate * Hp,
                  H * sizeof(float));
}

// Chunk boundaries over the backward's panels, by their cost: an Wh^T
// panel does dh (4Hp deep) and the gates; an Wi^T panel only dx.
inline std::vector<int64_t> BwdChunks(int64_t nh, int64_t np, int64_t D,
                                      int64_t H, int64_t Hp, int chunks) {
  const double h_cost = 4.0 * Hp + 40.0, x_cost = 4.0 * Hp;
  const double total = nh * h_cost + (np - nh) * x_cost;
  std::vector<int64_t> bounds(chunks + 1, np);
  bounds[0] = 0;
  double sum = 0.0;
  int c = 1;
  for (int64_t q = 0; q < np && c < chunks; ++q) {
    sum += q < nh ? h_cost : x_cost;
    if (sum >= total * c / chunks) bounds[c++] = q + 1;
  }
  return bounds;
}

#define MJX_RUNNERS                                                        \
  void RunLayerForward(ffi::ThreadPool& pool, LayerFwdArgs a,              \
                       const float* wi, const float* wh, int64_t threads) { \
    std::vector<float> panels = PackLayerForward(wi, wh, a.D, a.H);        \
    a.panels = panels.data();                                              \
    const int64_t nb = (a.H + L - 1) / L;                                  \
    const int nt =                                                         \
        ChooseThreads(threads, pool, 8 * a.B * a.H * (a.H + a.D), nb);     \
    const int nc = Chunks(nt, nb);                                         \
    std::vector<float> scratch(nc * a.B * L);                              \
    float* ig = scratch.data();                                            \
    const int64_t size = a.B * L;                                          \
    RunSteps(&pool, nt, a.T, nc, [&a, nb, nc, ig, size](int64_t t, int c) { \
      LayerFwdStep(a, t, nb * c / nc, nb * (c + 1) / nc, ig + c * size);   \
    });                                                                    \
  }                                                                        \
  void RunLayerBackward(ffi::ThreadPool& pool, LayerBwdArgs a,              \
                        const float* wi, const float* wh,                   \
                        const float* d_c_last, int64_t threads, float* dwi, \
                        float* dwh, float* db) {                            \
    std::vector<float> panels = PackLayerBackward(wi, wh, a.D, a.H, &a.nh); \
    a.panels = panels.data();                                               \
    a.Hp = PaddedHidden(a.H);                                               \
    const int64_t gp = 4 * a.Hp;                                            \
    a.ldz = gp + 16;                                                        \
    const int64_t dz_size = a.T * a.B * a.ldz;                              \
    std::unique_ptr<float[]> work(new float[dz_size + (a.D + a.H + 1) * gp]); \
    a.dz = work.get(), a.dwi = a.dz + dz_size;                              \
    ZeroPadding(a.dz, a.T * a.B, a.H, a.Hp);                                \
    std::fill(a.dwi, a.dwi + (a.D + a.H + 1) * gp, 0.0f);                   \
    a.dwh = a.dwi + a.D * gp, a.db = a.dwh + a.H * gp;                      \
    std::memcpy(a.dc, d_c_last, a.B * a.H * sizeof(float));                 \
    const int64_t np = a.nh + (a.D + 2 * L - 1) / (2 * L);                  \
    const int nt =                                                          \
        ChooseThreads(threads, pool, 8 * a.B * a.H * (a.H + a.D), np);      \
    const int nc = Chunks(nt, np);                                          \
    const std::vector<int64_t> bounds =                                     \
        BwdChunks(a.nh, np, a.D, a.H, a.Hp, nc);                            \
    const int64_t* q = bounds.data();                                       \
    RunSteps(&pool, nt, a.T + 1, nc, [&a, q](int64_t s, int c) {            \
      LayerBwdStep(a, a.T - 1 - s, q[c], q[c + 1]);                         \
    });                                                                     \
    const int64_t nw = gp / (2 * L);                                        \
    const int cw = Chunks(nt, nw);                                          \
    RunSteps(&pool, nt, 1, cw, [&a, nw, cw](int64_t, int c) {               \
      LayerWeights(a, nw * c / cw, nw * (c + 1) / cw);                      \
    });                                                                     \
    Unpad(a.dwi, a.D, a.H, a.Hp, dwi);                                      \
    Unpad(a.dwh, a.H, a.H, a.Hp, dwh);                                      \
    Unpad(a.db, 1, a.H, a.Hp, db);                                          \
  }

namespace avx2 {
struct S {
  using V = __m256;
  static constexpr int L = 8, kRows = 6;  // 12 accumulators of 16 registers
  static MJX_INLINE V Zero() { return _mm256_setzero_ps(); }
  static MJX_INLINE V Set(float v) { return _mm256_set1_ps(v); }
  static MJX_INLINE V Load(const float* p) { return _mm256_loadu_ps(p); }
  static MJX_INLINE V Load(const float* p, int n) { return ::Load(p, n); }
  static MJX_INLINE void Store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static MJX_INLINE void Store(float* p, V v, int n) { ::Store(p, v, n); }
  static MJX_INLINE void StoreStream(float* p, V v, int n) { Store(p, v, n); }
  static MJX_INLINE void Fence() {}
  static MJX_INLINE V Broadcast(const float* p) {
    return _mm256_broadcast_ss(p);
  }
  static MJX_INLINE V Fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static MJX_INLINE V Fnma(V a, V b, V c) {
    return _mm256_fnmadd_ps(a, b, c);
  }
  static MJX_INLINE V Add(V a, V b) { return _mm256_add_ps(a, b); }
  static MJX_INLINE V Sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static MJX_INLINE V Mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static MJX_INLINE V Exp(V x) { return ::Exp(x); }
  static MJX_INLINE V Sigmoid(V x) { return ::Sigmoid(x); }
  static MJX_INLINE V Tanh(V x) { return ::Tanh(x); }
};
#include "lstm_fused_layer.cc"
MJX_RUNNERS
}  // namespace avx2

#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma")
namespace avx512 {
struct S {
  using V = __m512;
  static constexpr int L = 16, kRows = 12;  // 24 accumulators of 32
  static MJX_INLINE V Zero() { return _mm512_setzero_ps(); }
  static MJX_INLINE V Set(float v) { return _mm512_set1_ps(v); }
  static MJX_INLINE __mmask16 Mask(int n) {
    return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
  }
  static MJX_INLINE V Load(const float* p) { return _mm512_loadu_ps(p); }
  static MJX_INLINE V Load(const float* p, int n) {
    return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(Mask(n), p);
  }
  static MJX_INLINE void Store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static MJX_INLINE void Store(float* p, V v, int n) {
    if (n >= 16)
      _mm512_storeu_ps(p, v);
    else
      _mm512_mask_storeu_ps(p, Mask(n), v);
  }
  // A store that bypasses the caches where it fills a whole aligned line
  // (the saved gates, read back only by the backward pass).
  static MJX_INLINE void StoreStream(float* p, V v, int n) {
    if (n >= 16 && (reinterpret_cast<uintptr_t>(p) & 63) == 0)
      _mm512_stream_ps(p, v);
    else
      Store(p, v, n);
  }
  static MJX_INLINE void Fence() { _mm_sfence(); }
  static MJX_INLINE V Broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static MJX_INLINE V Fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static MJX_INLINE V Fnma(V a, V b, V c) {
    return _mm512_fnmadd_ps(a, b, c);
  }
  static MJX_INLINE V Add(V a, V b) { return _mm512_add_ps(a, b); }
  static MJX_INLINE V Sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static MJX_INLINE V Mul(V a, V b) { return _mm512_mul_ps(a, b); }
  // The AVX2 code's polynomials; 2^n by scalef.
  static MJX_INLINE V Exp(V x) {
    x = _mm512_min_ps(_mm512_max_ps(x, Set(-87.3f)), Set(88.3f));
    V n = _mm512_roundscale_ps(_mm512_mul_ps(x, Set(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    V r = _mm512_fnmadd_ps(n, Set(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, Set(-2.12194440e-4f), r);
    V p = Set(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, Set(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, Set(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, Set(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, Set(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, Set(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
    return _mm512_scalef_ps(_mm512_add_ps(p, Set(1.0f)), n);
  }
  // 1 / x: a 14-bit estimate and one Newton step (relative error about
  // 1e-8; a zmm division costs 16 cycles of throughput on Intel cores).
  static MJX_INLINE V Recip(V x) {
    V r = _mm512_rcp14_ps(x);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(x, r, Set(2.0f)));
  }
  static MJX_INLINE V Sigmoid(V x) {
    return Recip(_mm512_add_ps(Set(1.0f), Exp(_mm512_sub_ps(Zero(), x))));
  }
  static MJX_INLINE V Tanh(V x) {
    const V sign = Set(-0.0f);
    V ax = _mm512_andnot_ps(sign, x);
    V z = _mm512_mul_ps(x, x);
    V p = Set(-5.70498872745e-3f);
    p = _mm512_fmadd_ps(p, z, Set(2.06390887954e-2f));
    p = _mm512_fmadd_ps(p, z, Set(-5.37397155531e-2f));
    p = _mm512_fmadd_ps(p, z, Set(1.33314422036e-1f));
    p = _mm512_fmadd_ps(p, z, Set(-3.33332819422e-1f));
    V small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), x, x);
    V e = Exp(_mm512_add_ps(ax, ax));
    V big = _mm512_fnmadd_ps(Set(2.0f), Recip(_mm512_add_ps(e, Set(1.0f))),
                             Set(1.0f));
    big = _mm512_or_ps(big, _mm512_and_ps(sign, x));
    return _mm512_mask_blend_ps(
        _mm512_cmp_ps_mask(ax, Set(0.625f), _CMP_GE_OQ), small, big);
  }
};
#include "lstm_fused_layer.cc"
MJX_RUNNERS
}  // namespace avx512
#pragma GCC pop_options

// isa: 0 the best this CPU has, 1 AVX2 + FMA, 2 AVX-512 (if it has it).
bool HasAvx512() {
  return __builtin_cpu_supports("avx512f") &&
         __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

int ChooseIsa(int64_t isa) { return isa != 1 && HasAvx512() ? 2 : 1; }

ffi::Error LayerForward(ffi::ThreadPool pool, F32 x, F32 wi, F32 wh, F32 bias,
                        F32 h0, F32 c0, float* hs, float* cs, float* gates,
                        int64_t threads, int64_t isa) {
  auto d = x.dimensions();
  if (d.size() != 3) return ffi::Error::InvalidArgument("x must be [T, B, D]");
  LayerFwdArgs a;
  a.T = d[0], a.B = d[1], a.D = d[2], a.H = h0.dimensions()[1];
  if (wi.dimensions()[0] != a.D || wi.dimensions()[1] != 4 * a.H ||
      wh.dimensions()[0] != a.H || wh.dimensions()[1] != 4 * a.H)
    return ffi::Error::InvalidArgument("kernels must be [D, 4H] and [H, 4H]");
  a.x = x.typed_data(), a.bias = bias.typed_data();
  a.h0 = h0.typed_data(), a.c0 = c0.typed_data();
  a.hs = hs, a.cs = cs, a.gates = gates;
  if (ChooseIsa(isa) == 2)
    avx512::RunLayerForward(pool, a, wi.typed_data(), wh.typed_data(), threads);
  else
    avx2::RunLayerForward(pool, a, wi.typed_data(), wh.typed_data(), threads);
  return ffi::Error::Success();
}

ffi::Error LayerFwdImpl(ffi::ThreadPool pool, F32 x, F32 wi, F32 wh, F32 bias,
                        F32 h0, F32 c0, Out hs, Out cs, Out gates,
                        int64_t threads, int64_t isa) {
  return LayerForward(pool, x, wi, wh, bias, h0, c0, hs->typed_data(),
                      cs->typed_data(), gates->typed_data(), threads, isa);
}

ffi::Error LayerFwdInferImpl(ffi::ThreadPool pool, F32 x, F32 wi, F32 wh,
                             F32 bias, F32 h0, F32 c0, Out hs, Out cs,
                             int64_t threads, int64_t isa) {
  return LayerForward(pool, x, wi, wh, bias, h0, c0, hs->typed_data(),
                      cs->typed_data(), nullptr, threads, isa);
}

ffi::Error LayerBwdImpl(ffi::ThreadPool pool, F32 x, F32 wi, F32 wh, F32 h0,
                        F32 c0, F32 hs, F32 cs, F32 gates, F32 d_hs,
                        F32 d_h_last, F32 d_c_last, Out dx, Out dwi, Out dwh,
                        Out db, Out dh0, Out dc0, int64_t threads,
                        int64_t isa) {
  auto d = cs.dimensions();
  LayerBwdArgs a;
  a.T = d[0], a.B = d[1], a.H = d[2], a.D = x.dimensions()[2], a.nh = 0;
  a.x = x.typed_data(), a.h0 = h0.typed_data(), a.c0 = c0.typed_data();
  a.hs = hs.typed_data(), a.cs = cs.typed_data();
  a.gates = gates.typed_data(), a.d_hs = d_hs.typed_data();
  a.d_h_last = d_h_last.typed_data();
  a.dx = dx->typed_data();
  a.dh0 = dh0->typed_data(), a.dc = dc0->typed_data();
  if (a.T == 0) return ffi::Error::InvalidArgument("T must be at least 1");
  if (ChooseIsa(isa) == 2)
    avx512::RunLayerBackward(pool, a, wi.typed_data(), wh.typed_data(),
                             d_c_last.typed_data(), threads, dwi->typed_data(),
                             dwh->typed_data(), db->typed_data());
  else
    avx2::RunLayerBackward(pool, a, wi.typed_data(), wh.typed_data(),
                           d_c_last.typed_data(), threads, dwi->typed_data(),
                           dwh->typed_data(), db->typed_data());
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MjxFusedLstmFwd, FwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // projected
                                  .Arg<F32>()  // Wh
                                  .Arg<F32>()  // h0
                                  .Arg<F32>()  // c0
                                  .Ret<F32>()  // hs
                                  .Ret<F32>()  // cs
                                  .Ret<F32>()  // gates
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MjxFusedLstmFwdInfer, FwdInferImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // projected
                                  .Arg<F32>()  // Wh
                                  .Arg<F32>()  // h0
                                  .Arg<F32>()  // c0
                                  .Ret<F32>()  // hs
                                  .Ret<F32>()  // cs
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MjxFusedLstmBwd, BwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // Wh
                                  .Arg<F32>()  // c0
                                  .Arg<F32>()  // cs
                                  .Arg<F32>()  // gates
                                  .Arg<F32>()  // d_hs
                                  .Arg<F32>()  // d_hT
                                  .Arg<F32>()  // d_cT
                                  .Ret<F32>()  // dz
                                  .Ret<F32>()  // dh0
                                  .Ret<F32>()  // dc0
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MjxLstmLayerFwd, LayerFwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // Wi
                                  .Arg<F32>()  // Wh
                                  .Arg<F32>()  // bias
                                  .Arg<F32>()  // h0
                                  .Arg<F32>()  // c0
                                  .Ret<F32>()  // hs
                                  .Ret<F32>()  // cs
                                  .Ret<F32>()  // gates
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("isa"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MjxLstmLayerFwdInfer, LayerFwdInferImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // Wi
                                  .Arg<F32>()  // Wh
                                  .Arg<F32>()  // bias
                                  .Arg<F32>()  // h0
                                  .Arg<F32>()  // c0
                                  .Ret<F32>()  // hs
                                  .Ret<F32>()  // cs
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("isa"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MjxLstmLayerBwd, LayerBwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // Wi
                                  .Arg<F32>()  // Wh
                                  .Arg<F32>()  // h0
                                  .Arg<F32>()  // c0
                                  .Arg<F32>()  // hs
                                  .Arg<F32>()  // cs
                                  .Arg<F32>()  // gates
                                  .Arg<F32>()  // d_hs
                                  .Arg<F32>()  // d_hT
                                  .Arg<F32>()  // d_cT
                                  .Ret<F32>()  // dx
                                  .Ret<F32>()  // dWi
                                  .Ret<F32>()  // dWh
                                  .Ret<F32>()  // db
                                  .Ret<F32>()  // dh0
                                  .Ret<F32>()  // dc0
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("isa"));

// The instruction set that isa (0 best, 1 AVX2, 2 AVX-512) runs here.
extern "C" int mjx_fused_isa(int64_t isa) { return ChooseIsa(isa); }

// The vector math of one instruction set, for the tests (see below).
extern "C" void mjx_fused_eval_math_isa(int64_t isa, int kind, int64_t n,
                                        const float* in, float* out) {
  if (ChooseIsa(isa) == 2)
    avx512::EvalMath(kind, n, in, out);
  else
    avx2::EvalMath(kind, n, in, out);
}

// For the tests: out[i] = f(in[i]) with f = exp (0), sigmoid (1), tanh (2)
// of the vector code above (n a multiple of 8 or not).
extern "C" void mjx_fused_eval_math(int kind, int64_t n, const float* in,
                                    float* out) {
  for (int64_t i = 0; i < n; i += 8) {
    int lanes = static_cast<int>(std::min<int64_t>(8, n - i));
    __m256 x = Load(in + i, lanes);
    __m256 y = kind == 0 ? Exp(x) : kind == 1 ? Sigmoid(x) : Tanh(x);
    Store(out + i, y, lanes);
  }
}
