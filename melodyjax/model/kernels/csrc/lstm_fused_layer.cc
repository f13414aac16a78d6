// The whole LSTM layer, input projection folded in. Not compiled on its
// own: included by lstm_fused.cc once per instruction set, inside `namespace MJX_NS` and a
// `#pragma GCC target` region, with `S` the vector traits (lanes L, at most
// S::kRows rows per register tile, Load/Store of n lanes, Exp, Sigmoid,
// Tanh). See lstm_fused.cc's header for the layout and the handlers.
//
// Forward, step t, unit block j (L hidden units), over row tiles of the
// batch: z = [x_t, h_{t-1}] @ [Wi; Wh] in two passes of a (rows x 2L)
// register tile, the first for gates i and g (i g kept in a scratch row),
// the second for f and o, whose epilogue makes c_t and h_t. The bias is
// added in the epilogue.
//
// Backward, step t: one GEMM dz_{t+1} @ [Wh^T | Wi^T] in column panels of
// 2L: an Wh^T panel gives dh for 2L units, whose epilogue makes dz_t; an
// Wi^T panel gives dx_{t+1} (the layer's input gradient), stored as it is.
// After the loop, the weight gradients are one GEMM over all steps.

constexpr int L = S::L;
constexpr int kRows = S::kRows;
using V = typename S::V;

// out[r][2L] = a1[r, :K1] @ panel[:K1] + a2[r, :K2] @ panel[K1:], r < MR.
// One named variable per accumulator (arrays of vectors were spilled).
template <int MR>
MJX_INLINE void Tile(const float* __restrict a1, int64_t lda1, int64_t k1,
                     const float* __restrict a2, int64_t lda2, int64_t k2,
                     const float* __restrict panel, float* __restrict out) {
  static_assert(MR >= 1 && MR <= kRows);
  V c00 = S::Zero(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  V c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  V c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
  V c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
#define MJX_ROW(r, n)                                 \
  if constexpr (MR > n) {                             \
    V x = S::Broadcast(a + n * lda + k);              \
    c##r##0 = S::Fma(x, b0, c##r##0);                 \
    c##r##1 = S::Fma(x, b1, c##r##1);                 \
  }
#define MJX_PART(A, LDA, K, P)                                            \
  {                                                                       \
    const float* a = A;                                                   \
    const int64_t lda = LDA;                                              \
    const float* p = P;                                                   \
    for (int64_t k = 0; k < K; ++k, p += 2 * L) {                         \
      V b0 = S::Load(p), b1 = S::Load(p + L);                             \
      MJX_ROW(0, 0) MJX_ROW(1, 1) MJX_ROW(2, 2) MJX_ROW(3, 3)             \
      MJX_ROW(4, 4) MJX_ROW(5, 5) MJX_ROW(6, 6) MJX_ROW(7, 7)             \
      MJX_ROW(8, 8) MJX_ROW(9, 9) MJX_ROW(a, 10) MJX_ROW(b, 11)           \
    }                                                                     \
  }
  MJX_PART(a1, lda1, k1, panel)
  if (k2 > 0) MJX_PART(a2, lda2, k2, panel + k1 * 2 * L)
#undef MJX_PART
#undef MJX_ROW
#define MJX_OUT(r, n)                             \
  if constexpr (MR > n) {                         \
    S::Store(out + n * 2 * L, c##r##0);           \
    S::Store(out + n * 2 * L + L, c##r##1);       \
  }
  MJX_OUT(0, 0) MJX_OUT(1, 1) MJX_OUT(2, 2) MJX_OUT(3, 3) MJX_OUT(4, 4)
  MJX_OUT(5, 5) MJX_OUT(6, 6) MJX_OUT(7, 7) MJX_OUT(8, 8) MJX_OUT(9, 9)
  MJX_OUT(a, 10) MJX_OUT(b, 11)
#undef MJX_OUT
}

// c[r][2L] += sum_b a[b * lda + r] * z[b * ldz .. + 2L], r < MR, b < nb:
// a weight gradient's rows r (columns of a) by 2L of its columns.
template <int MR>
MJX_INLINE void TileAcc(const float* __restrict a, int64_t lda, int64_t nb,
                        const float* __restrict z, int64_t ldz,
                        float* __restrict c, int64_t ldc) {
  static_assert(MR >= 1 && MR <= kRows);
  V c00 = S::Zero(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  V c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  V c60 = c00, c61 = c00, c70 = c00, c71 = c00, c80 = c00, c81 = c00;
  V c90 = c00, c91 = c00, ca0 = c00, ca1 = c00, cb0 = c00, cb1 = c00;
#define MJX_ROW(r, n)                        \
  if constexpr (MR > n) {                    \
    V x = S::Broadcast(a + n);               \
    c##r##0 = S::Fma(x, b0, c##r##0);        \
    c##r##1 = S::Fma(x, b1, c##r##1);        \
  }
  for (int64_t b = 0; b < nb; ++b, a += lda, z += ldz) {
    V b0 = S::Load(z), b1 = S::Load(z + L);
    MJX_ROW(0, 0) MJX_ROW(1, 1) MJX_ROW(2, 2) MJX_ROW(3, 3)
    MJX_ROW(4, 4) MJX_ROW(5, 5) MJX_ROW(6, 6) MJX_ROW(7, 7)
    MJX_ROW(8, 8) MJX_ROW(9, 9) MJX_ROW(a, 10) MJX_ROW(b, 11)
  }
#undef MJX_ROW
#define MJX_OUT(r, n)                                                  \
  if constexpr (MR > n) {                                              \
    S::Store(c + n * ldc, S::Add(S::Load(c + n * ldc), c##r##0));      \
    S::Store(c + n * ldc + L, S::Add(S::Load(c + n * ldc + L), c##r##1)); \
  }
  MJX_OUT(0, 0) MJX_OUT(1, 1) MJX_OUT(2, 2) MJX_OUT(3, 3) MJX_OUT(4, 4)
  MJX_OUT(5, 5) MJX_OUT(6, 6) MJX_OUT(7, 7) MJX_OUT(8, 8) MJX_OUT(9, 9)
  MJX_OUT(a, 10) MJX_OUT(b, 11)
#undef MJX_OUT
}

template <int MR = kRows>
MJX_INLINE void AnyTileAcc(int mr, const float* a, int64_t lda, int64_t nb,
                           const float* z, int64_t ldz, float* c,
                           int64_t ldc) {
  if constexpr (MR >= 1) {
    if (mr == MR) return TileAcc<MR>(a, lda, nb, z, ldz, c, ldc);
    AnyTileAcc<MR - 1>(mr, a, lda, nb, z, ldz, c, ldc);
  }
}

// Tile<mr> for a run-time mr in 1..kRows.
template <int MR = kRows>
MJX_INLINE void AnyTile(int mr, const float* a1, int64_t lda1, int64_t k1,
                        const float* a2, int64_t lda2, int64_t k2,
                        const float* panel, float* out) {
  if constexpr (MR >= 1) {
    if (mr == MR) return Tile<MR>(a1, lda1, k1, a2, lda2, k2, panel, out);
    AnyTile<MR - 1>(mr, a1, lda1, k1, a2, lda2, k2, panel, out);
  }
}

// Row tile i of n: rows B i / n .. B (i + 1) / n (n = ceil(B / kRows), so
// tiles of nearly equal height, none much shorter than the others).
inline int64_t RowTiles(int64_t B) { return (B + kRows - 1) / kRows; }

inline int Lanes(int64_t left) {
  return static_cast<int>(std::min<int64_t>(L, std::max<int64_t>(left, 0)));
}

// ---------------------------------------------------------------------------
// Forward.

// Panel (j, pass) of unit block j: K = D + H rows of 2L columns, rows of
// Wi then Wh; pass 0 holds gates i | g of units jL .. jL + L - 1, pass 1
// gates f | o (zero past H).
std::vector<float> PackLayerForward(const float* wi, const float* wh,
                                    int64_t D, int64_t H) {
  const int64_t nb = (H + L - 1) / L, K = D + H, G = 4 * H;
  std::vector<float> p(nb * 2 * K * 2 * L, 0.0f);
  static const int kGate[2][2] = {{0, 2}, {1, 3}};
  for (int64_t j = 0; j < nb; ++j)
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t k = 0; k < K; ++k)
        for (int half = 0; half < 2; ++half)
          for (int l = 0; l < L; ++l) {
            const int64_t u = j * L + l;
            if (u >= H) continue;
            const int64_t col = kGate[pass][half] * H + u;
            p[((j * 2 + pass) * K + k) * 2 * L + half * L + l] =
                k < D ? wi[k * G + col] : wh[(k - D) * G + col];
          }
  return p;
}

// Unit blocks j0 .. j1 - 1 of step t; ig: scratch of B * L floats.
void LayerFwdStep(const LayerFwdArgs& a, int64_t t, int64_t j0, int64_t j1,
                  float* ig) {
  const int64_t B = a.B, D = a.D, H = a.H, G = 4 * H, K = D + H;
  const float* h_prev = t == 0 ? a.h0 : a.hs + (t - 1) * B * H;
  const float* c_prev = t == 0 ? a.c0 : a.cs + (t - 1) * B * H;
  const float* x = a.x + t * B * D;
  alignas(64) float tile[kRows * 2 * L];
  for (int64_t j = j0; j < j1; ++j) {
    const int64_t u = j * L;
    const int n = Lanes(H - u);
    const V bi = S::Load(a.bias + u, n), bf = S::Load(a.bias + H + u, n);
    const V bg = S::Load(a.bias + 2 * H + u, n);
    const V bo = S::Load(a.bias + 3 * H + u, n);
    for (int pass = 0; pass < 2; ++pass) {
      const float* panel = a.panels + (j * 2 + pass) * K * 2 * L;
      const int64_t tiles = RowTiles(B);
      for (int64_t i = 0; i < tiles; ++i) {
        const int64_t r0 = B * i / tiles;
        const int mr = static_cast<int>(B * (i + 1) / tiles - r0);
        AnyTile(mr, x + r0 * D, D, D, h_prev + r0 * H, H, H, panel, tile);
        for (int r = 0; r < mr; ++r) {
          const int64_t b = r0 + r, row = t * B + b;
          const V za = S::Load(tile + r * 2 * L);
          const V zb = S::Load(tile + r * 2 * L + L);
          float* gates = a.gates ? a.gates + row * G + u : nullptr;
          if (pass == 0) {
            const V i = S::Sigmoid(S::Add(za, bi));
            const V g = S::Tanh(S::Add(zb, bg));
            S::Store(ig + b * L, S::Mul(i, g));
            if (gates)
              S::StoreStream(gates, i, n), S::StoreStream(gates + 2 * H, g, n);
          } else {
            const V f = S::Sigmoid(S::Add(za, bf));
            const V o = S::Sigmoid(S::Add(zb, bo));
            const V c = S::Fma(f, S::Load(c_prev + b * H + u, n),
                               S::Load(ig + b * L));
            S::Store(a.cs + row * H + u, c, n);
            S::Store(a.hs + row * H + u, S::Mul(o, S::Tanh(c)), n);
            if (gates)
              S::StoreStream(gates + H, f, n),
                  S::StoreStream(gates + 3 * H, o, n);
          }
        }
      }
    }
  }
  S::Fence();  // the streaming stores are visible before the step is done
}

// ---------------------------------------------------------------------------
// Backward.

// The backward's gate stride: H rounded up to whole panels of 2L units,
// so that a panel's columns of dz, dWi, dWh and db never reach into the
// next gate (the padding stays zero).
inline int64_t PaddedHidden(int64_t H) { return (H + 2 * L - 1) / (2 * L) * 2 * L; }

// Panel q of 4Hp rows (dz's padded columns) and 2L columns: q < nh:
// Wh[u, :] of units 2Lq .. 2Lq + 2L - 1 (dh = dz @ Wh^T); q >= nh: Wi[d, :]
// of inputs 2L(q - nh) .. (dx = dz @ Wi^T); zero past H, D or a gate's H.
std::vector<float> PackLayerBackward(const float* wi, const float* wh,
                                     int64_t D, int64_t H, int64_t* nh) {
  const int64_t G = 4 * H, Hp = PaddedHidden(H), Gp = 4 * Hp;
  *nh = Hp / (2 * L);
  const int64_t nx = (D + 2 * L - 1) / (2 * L);
  std::vector<float> p((*nh + nx) * Gp * 2 * L, 0.0f);
  for (int64_t q = 0; q < *nh + nx; ++q)
    for (int l = 0; l < 2 * L; ++l) {
      const bool h_panel = q < *nh;
      const int64_t col = (h_panel ? q : q - *nh) * 2 * L + l;
      if (col >= (h_panel ? H : D)) continue;
      const float* w = (h_panel ? wh : wi) + col * G;
      for (int gate = 0; gate < 4; ++gate)
        for (int64_t u = 0; u < H; ++u)
          p[(q * Gp + gate * Hp + u) * 2 * L + l] = w[gate * H + u];
    }
  return p;
}

// The gates' gradients of rows r0 .. r0 + mr - 1 at step t for L units
// from u, given dh (from the tile, row stride 2L) without d_hs[t].
MJX_INLINE void BwdEpilogue(const LayerBwdArgs& a, int64_t t, int64_t r0,
                            int mr, int64_t u, const float* dh_rows) {
  const int64_t B = a.B, H = a.H, G = 4 * H, Hp = a.Hp;
  const int n = Lanes(H - u);
  const V one = S::Set(1.0f);
  for (int r = 0; r < mr; ++r) {
    const int64_t b = r0 + r, row = t * B + b;
    V dh = S::Load(dh_rows + r * 2 * L);
    if (t < 0) {
      S::Store(a.dh0 + b * H + u, dh, n);
      continue;
    }
    dh = S::Add(dh, S::Load(a.d_hs + row * H + u, n));
    const float* q = a.gates + row * G + u;
    const V i = S::Load(q, n), f = S::Load(q + H, n);
    const V g = S::Load(q + 2 * H, n), o = S::Load(q + 3 * H, n);
    const V c = S::Load(a.cs + row * H + u, n);
    const float* cp = t == 0 ? a.c0 + b * H : a.cs + (row - B) * H;
    const V c_prev = S::Load(cp + u, n);
    const V tc = S::Tanh(c);
    const V dc = S::Fma(S::Mul(dh, o), S::Fnma(tc, tc, one),
                        S::Load(a.dc + b * H + u, n));
    float* out = a.dz + (t * B + b) * a.ldz + u;
    S::Store(out, S::Mul(S::Mul(dc, g), S::Mul(i, S::Sub(one, i))), n);
    S::Store(out + Hp,
             S::Mul(S::Mul(dc, c_prev), S::Mul(f, S::Sub(one, f))), n);
    S::Store(out + 2 * Hp, S::Mul(S::Mul(dc, i), S::Fnma(g, g, one)), n);
    S::Store(out + 3 * Hp,
             S::Mul(S::Mul(dh, tc), S::Mul(o, S::Sub(one, o))), n);
    S::Store(a.dc + b * H + u, S::Mul(dc, f), n);
  }
}

// Rows r0 .. r0 + rows - 1 of A = [x, h_prev] (h_prev of step 0 is h0),
// packed per row tile of the weight gradients: tile i (its mr columns k of
// A) holds mr floats per row, rows one after another, so that TileAcc reads
// one sequential stream.
void PackWeightRows(const LayerBwdArgs& a, int64_t r0, int64_t rows,
                    float* out) {
  const int64_t B = a.B, D = a.D, H = a.H, K = D + H, tiles = RowTiles(K);
  for (int64_t i = 0; i < tiles; ++i) {
    const int64_t k0 = K * i / tiles, mr = K * (i + 1) / tiles - k0;
    float* dst = out + k0 * rows;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = r0 + r;
      const float* xr = a.x + row * D;
      const float* hr = row < B ? a.h0 + row * H : a.hs + (row - B) * H;
      for (int64_t k = k0; k < k0 + mr; ++k)
        *dst++ = k < D ? xr[k] : hr[k - D];
    }
  }
}

// The weight and bias gradients' column blocks n0 .. n1 - 1 (2L columns of
// the padded 4Hp each) after the backward loop: [dWi; dWh] += [x, h_prev]^T
// dz over all steps, one block of about 512 rows (steps) at a time, packed,
// so that it stays in L2 while every column block uses it.
void LayerWeights(const LayerBwdArgs& a, int64_t n0, int64_t n1) {
  const int64_t T = a.T, B = a.B, D = a.D, H = a.H, G = 4 * a.Hp;
  const int64_t ldz = a.ldz, K = D + H, tiles = RowTiles(K);
  const int64_t span = std::max<int64_t>(1, 512 / B);  // steps per block
  // A column block's dz, packed too: rows ldz apart are each on a page of
  // their own, which missed the TLB at every row of every tile.
  std::vector<float> packed(span * B * 2 * L), rows_a(span * B * K);
  float* dz = packed.data();
  for (int64_t t0 = 0; t0 < T; t0 += span) {
    const int64_t rows = (std::min(T, t0 + span) - t0) * B;
    PackWeightRows(a, t0 * B, rows, rows_a.data());
    for (int64_t n = n0; n < n1; ++n) {
      const int64_t col = n * 2 * L;
      const float* src = a.dz + t0 * B * ldz + col;
      V s0 = S::Load(a.db + col), s1 = S::Load(a.db + col + L);
      for (int64_t b = 0; b < rows; ++b) {
        const V z0 = S::Load(src + b * ldz), z1 = S::Load(src + b * ldz + L);
        S::Store(dz + b * 2 * L, z0), S::Store(dz + b * 2 * L + L, z1);
        s0 = S::Add(s0, z0), s1 = S::Add(s1, z1);
      }
      S::Store(a.db + col, s0), S::Store(a.db + col + L, s1);
      for (int64_t i = 0; i < tiles; ++i) {
        const int64_t k = K * i / tiles;
        const int mr = static_cast<int>(K * (i + 1) / tiles - k);
        // [dWi; dWh] rows k .. k + mr - 1: dWh's row k - D is right after
        // dWi's last (both G wide, one buffer).
        AnyTileAcc(mr, rows_a.data() + k * rows, mr, rows, dz, 2 * L,
                   a.dwi + k * G + col, G);
      }
    }
  }
}

// Panels q0 .. q1 - 1 of step t (T - 1 down to -1; -1: dh0 and dx_0 only).
void LayerBwdStep(const LayerBwdArgs& a, int64_t t, int64_t q0, int64_t q1) {
  const int64_t B = a.B, D = a.D, H = a.H, G = 4 * a.Hp, T = a.T;
  alignas(64) float tile[kRows * 2 * L];
  const int64_t tiles = RowTiles(B);
  for (int64_t q = q0; q < q1; ++q) {
    const bool h_panel = q < a.nh;
    if (!h_panel && t + 1 >= T) continue;  // no dx_{t+1}
    const float* panel = a.panels + q * G * 2 * L;
    for (int64_t i = 0; i < tiles; ++i) {
      const int64_t r0 = B * i / tiles;
      const int mr = static_cast<int>(B * (i + 1) / tiles - r0);
      if (t + 1 < T) {
        const float* dz = a.dz + ((t + 1) * B + r0) * a.ldz;
        AnyTile(mr, dz, a.ldz, G, nullptr, 0, 0, panel, tile);
      } else {  // the last step: dh from the final state's cotangent
        for (int r = 0; r < mr; ++r)
          for (int half = 0; half < 2; ++half) {
            const int64_t u = q * 2 * L + half * L;
            S::Store(tile + r * 2 * L + half * L,
                     S::Load(a.d_h_last + (r0 + r) * H + u, Lanes(H - u)));
          }
      }
      if (!h_panel) {
        const int64_t d = (q - a.nh) * 2 * L;
        for (int r = 0; r < mr; ++r) {
          float* dx = a.dx + ((t + 1) * B + r0 + r) * D + d;
          S::Store(dx, S::Load(tile + r * 2 * L), Lanes(D - d));
          if (d + L < D)
            S::Store(dx + L, S::Load(tile + r * 2 * L + L), Lanes(D - d - L));
        }
        continue;
      }
      for (int half = 0; half < 2; ++half) {
        const int64_t u = q * 2 * L + half * L;
        if (u >= H) break;
        BwdEpilogue(a, t, r0, mr, u, tile + half * L);
      }
    }
  }
}

// For the tests: out[i] = exp (0), sigmoid (1) or tanh (2) of in[i].
void EvalMath(int kind, int64_t n, const float* in, float* out) {
  for (int64_t i = 0; i < n; i += L) {
    const int lanes = Lanes(n - i);
    const V x = S::Load(in + i, lanes);
    const V y = kind == 0 ? S::Exp(x) : kind == 1 ? S::Sigmoid(x) : S::Tanh(x);
    S::Store(out + i, y, lanes);
  }
}
