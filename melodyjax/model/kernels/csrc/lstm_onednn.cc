// One LSTM layer over a whole sequence through oneDNN's vanilla LSTM
// primitive, behind XLA FFI custom calls (CPU, float32).
//
// Our layout is oneDNN's plain layout: x [T, B, D] is `tnc`, the kernels
// Wi [D, 4H] and Wh [H, 4H] are `ldigo` (L = D = 1), the bias [4H] is
// `ldgo`, and oneDNN's gate order (i, f, c~, o) is ours (i, f, g, o). So no
// repacking happens here beyond the reorders oneDNN asks for (its backward
// wants the kernels transposed, `ldgoi`).
//
// Handlers:
//   MjxOnednnLstmFwd(x, Wi, Wh, b, h0, c0) -> (hs, h_T, c_T, workspace)
//     forward_training; `workspace` (uint8) is what lstm_backward needs.
//   MjxOnednnLstmBwd(x, Wi, Wh, b, h0, c0, hs, h_T, c_T, workspace,
//                    d_hs, d_hT, d_cT) -> (dx, dWi, dWh, db, dh0, dc0)
// and one plain C function, mjx_onednn_workspace_bytes(T, B, D, H), so
// Python can size the workspace output before the call.
//
// Primitives are cached per shape (mutex-guarded map, entries never
// evicted). Executing one primitive from several threads at once is safe
// because the scratchpad is ours (scratchpad_mode::user) and per thread.

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;
using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine* engine = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *engine;
}

// Everything one shape needs, built once.
struct Plan {
  int64_t T, B, D, H;
  // User (our) memory descriptors.
  memory::desc x, wi, wh, bias, state, hs;
  dnnl::lstm_forward::primitive_desc fwd_pd;
  dnnl::lstm_forward fwd;
  dnnl::lstm_backward::primitive_desc bwd_pd;
  dnnl::lstm_backward bwd;
  // Reorders of the kernels, when the primitive wants another layout.
  bool fwd_reorder_wi = false, fwd_reorder_wh = false;
  bool bwd_reorder_wi = false, bwd_reorder_wh = false;
  bool bwd_reorder_dwi = false, bwd_reorder_dwh = false;
  size_t scratch_bytes = 0;
};

std::shared_ptr<Plan> MakePlan(int64_t T, int64_t B, int64_t D, int64_t H) {
  auto p = std::make_shared<Plan>();
  p->T = T, p->B = B, p->D = D, p->H = H;
  p->x = memory::desc({T, B, D}, dt::f32, tag::tnc);
  p->hs = memory::desc({T, B, H}, dt::f32, tag::tnc);
  p->wi = memory::desc({1, 1, D, 4, H}, dt::f32, tag::ldigo);
  p->wh = memory::desc({1, 1, H, 4, H}, dt::f32, tag::ldigo);
  p->bias = memory::desc({1, 1, 4, H}, dt::f32, tag::ldgo);
  p->state = memory::desc({1, 1, B, H}, dt::f32, tag::ldnc);
  auto any_wi = memory::desc({1, 1, D, 4, H}, dt::f32, tag::any);
  auto any_wh = memory::desc({1, 1, H, 4, H}, dt::f32, tag::any);

  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

  p->fwd_pd = dnnl::lstm_forward::primitive_desc(
      Engine(), dnnl::prop_kind::forward_training,
      dnnl::rnn_direction::unidirectional_left2right, p->x, p->state,
      p->state, any_wi, any_wh, p->bias, p->hs, p->state, p->state, attr);
  p->fwd = dnnl::lstm_forward(p->fwd_pd);
  p->fwd_reorder_wi = p->fwd_pd.weights_layer_desc() != p->wi;
  p->fwd_reorder_wh = p->fwd_pd.weights_iter_desc() != p->wh;

  p->bwd_pd = dnnl::lstm_backward::primitive_desc(
      Engine(), dnnl::prop_kind::backward,
      dnnl::rnn_direction::unidirectional_left2right, p->x, p->state,
      p->state, any_wi, any_wh, p->bias, p->hs, p->state, p->state, p->x,
      p->state, p->state, any_wi, any_wh, p->bias, p->hs, p->state, p->state,
      p->fwd_pd, attr);
  p->bwd = dnnl::lstm_backward(p->bwd_pd);
  p->bwd_reorder_wi = p->bwd_pd.weights_layer_desc() != p->wi;
  p->bwd_reorder_wh = p->bwd_pd.weights_iter_desc() != p->wh;
  p->bwd_reorder_dwi = p->bwd_pd.diff_weights_layer_desc() != p->wi;
  p->bwd_reorder_dwh = p->bwd_pd.diff_weights_iter_desc() != p->wh;
  p->scratch_bytes = std::max(p->fwd_pd.scratchpad_desc().get_size(),
                              p->bwd_pd.scratchpad_desc().get_size());
  return p;
}

std::shared_ptr<Plan> GetPlan(int64_t T, int64_t B, int64_t D, int64_t H) {
  static std::mutex mu;
  static auto* cache =
      new std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>,
                   std::shared_ptr<Plan>>();
  auto key = std::make_tuple(T, B, D, H);
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache->find(key);
    if (it != cache->end()) return it->second;
  }
  auto plan = MakePlan(T, B, D, H);  // outside the lock: may take a while
  std::lock_guard<std::mutex> lock(mu);
  return cache->emplace(key, plan).first->second;  // first one wins
}

// Per-thread reusable storage (scratchpad, reordered kernels).
void* ThreadBuffer(int slot, size_t bytes) {
  thread_local std::vector<char> buffers[6];
  auto& b = buffers[slot];
  if (b.size() < bytes + 64) b.resize(bytes + 64);
  uintptr_t p = reinterpret_cast<uintptr_t>(b.data());
  return reinterpret_cast<void*>((p + 63) & ~uintptr_t(63));
}

// Memory wrapping `user`, or a per-thread copy of it in layout `want`.
memory Input(const memory::desc& want, const memory::desc& user_md,
             void* user, bool reorder, int slot, dnnl::stream& s) {
  memory user_mem(user_md, Engine(), user);
  if (!reorder) return user_mem;
  memory mem(want, Engine(), ThreadBuffer(slot, want.get_size()));
  dnnl::reorder(user_mem, mem).execute(s, user_mem, mem);
  return mem;
}

template <typename F>
ffi::Error Guard(F&& f) {
  try {
    f();
  } catch (const dnnl::error& e) {
    return ffi::Error::Internal(std::string("oneDNN LSTM: ") + e.what());
  } catch (const std::exception& e) {
    return ffi::Error::Internal(std::string("oneDNN LSTM: ") + e.what());
  }
  return ffi::Error::Success();
}

using F32 = ffi::Buffer<ffi::F32>;
using Out = ffi::ResultBuffer<ffi::F32>;

ffi::Error FwdImpl(F32 x, F32 wi, F32 wh, F32 b, F32 h0, F32 c0, Out hs,
                   Out h_last, Out c_last,
                   ffi::ResultBuffer<ffi::U8> workspace) {
  auto dims = x.dimensions();
  if (dims.size() != 3) return ffi::Error::InvalidArgument("x must be 3-D");
  const int64_t T = dims[0], B = dims[1], D = dims[2];
  const int64_t H = h0.dimensions()[1];
  return Guard([&] {
    auto p = GetPlan(T, B, D, H);
    if (workspace->size_bytes() < p->fwd_pd.workspace_desc().get_size())
      throw std::runtime_error("workspace output too small");
    dnnl::stream s(Engine());
    auto wi_m = Input(p->fwd_pd.weights_layer_desc(), p->wi, wi.typed_data(),
                      p->fwd_reorder_wi, 0, s);
    auto wh_m = Input(p->fwd_pd.weights_iter_desc(), p->wh, wh.typed_data(),
                      p->fwd_reorder_wh, 1, s);
    auto& e = Engine();
    memory scratch(p->fwd_pd.scratchpad_desc(), e,
                   ThreadBuffer(5, p->scratch_bytes));
    p->fwd.execute(
        s, {{DNNL_ARG_SRC_LAYER, memory(p->x, e, x.typed_data())},
            {DNNL_ARG_SRC_ITER, memory(p->state, e, h0.typed_data())},
            {DNNL_ARG_SRC_ITER_C, memory(p->state, e, c0.typed_data())},
            {DNNL_ARG_WEIGHTS_LAYER, wi_m},
            {DNNL_ARG_WEIGHTS_ITER, wh_m},
            {DNNL_ARG_BIAS, memory(p->bias, e, b.typed_data())},
            {DNNL_ARG_DST_LAYER, memory(p->hs, e, hs->typed_data())},
            {DNNL_ARG_DST_ITER, memory(p->state, e, h_last->typed_data())},
            {DNNL_ARG_DST_ITER_C, memory(p->state, e, c_last->typed_data())},
            {DNNL_ARG_WORKSPACE, memory(p->fwd_pd.workspace_desc(), e,
                                        workspace->untyped_data())},
            {DNNL_ARG_SCRATCHPAD, scratch}});
    s.wait();
  });
}

ffi::Error BwdImpl(F32 x, F32 wi, F32 wh, F32 b, F32 h0, F32 c0, F32 hs,
                   F32 h_last, F32 c_last, ffi::Buffer<ffi::U8> workspace,
                   F32 d_hs, F32 d_h_last, F32 d_c_last, Out dx, Out dwi,
                   Out dwh, Out db, Out dh0, Out dc0) {
  auto dims = x.dimensions();
  const int64_t T = dims[0], B = dims[1], D = dims[2];
  const int64_t H = h0.dimensions()[1];
  return Guard([&] {
    auto p = GetPlan(T, B, D, H);
    auto& pd = p->bwd_pd;
    auto& e = Engine();
    dnnl::stream s(e);
    auto wi_m = Input(pd.weights_layer_desc(), p->wi, wi.typed_data(),
                      p->bwd_reorder_wi, 0, s);
    auto wh_m = Input(pd.weights_iter_desc(), p->wh, wh.typed_data(),
                      p->bwd_reorder_wh, 1, s);
    // oneDNN adds the weight gradients to what is in diff_weights.
    memory dwi_user(p->wi, e, dwi->typed_data());
    memory dwh_user(p->wh, e, dwh->typed_data());
    memory dwi_m = p->bwd_reorder_dwi
                       ? memory(pd.diff_weights_layer_desc(), e,
                                ThreadBuffer(2, pd.diff_weights_layer_desc()
                                                    .get_size()))
                       : dwi_user;
    memory dwh_m = p->bwd_reorder_dwh
                       ? memory(pd.diff_weights_iter_desc(), e,
                                ThreadBuffer(3, pd.diff_weights_iter_desc()
                                                    .get_size()))
                       : dwh_user;
    std::memset(dwi_m.get_data_handle(), 0,
                pd.diff_weights_layer_desc().get_size());
    std::memset(dwh_m.get_data_handle(), 0,
                pd.diff_weights_iter_desc().get_size());
    std::memset(db->typed_data(), 0, db->size_bytes());
    memory scratch(pd.scratchpad_desc(), e,
                   ThreadBuffer(5, p->scratch_bytes));
    p->bwd.execute(
        s, {{DNNL_ARG_SRC_LAYER, memory(p->x, e, x.typed_data())},
            {DNNL_ARG_SRC_ITER, memory(p->state, e, h0.typed_data())},
            {DNNL_ARG_SRC_ITER_C, memory(p->state, e, c0.typed_data())},
            {DNNL_ARG_WEIGHTS_LAYER, wi_m},
            {DNNL_ARG_WEIGHTS_ITER, wh_m},
            {DNNL_ARG_BIAS, memory(p->bias, e, b.typed_data())},
            {DNNL_ARG_DST_LAYER, memory(p->hs, e, hs.typed_data())},
            {DNNL_ARG_DST_ITER, memory(p->state, e, h_last.typed_data())},
            {DNNL_ARG_DST_ITER_C, memory(p->state, e, c_last.typed_data())},
            {DNNL_ARG_WORKSPACE, memory(p->fwd_pd.workspace_desc(), e,
                                        workspace.untyped_data())},
            {DNNL_ARG_DIFF_DST_LAYER, memory(p->hs, e, d_hs.typed_data())},
            {DNNL_ARG_DIFF_DST_ITER,
             memory(p->state, e, d_h_last.typed_data())},
            {DNNL_ARG_DIFF_DST_ITER_C,
             memory(p->state, e, d_c_last.typed_data())},
            {DNNL_ARG_DIFF_SRC_LAYER, memory(p->x, e, dx->typed_data())},
            {DNNL_ARG_DIFF_SRC_ITER, memory(p->state, e, dh0->typed_data())},
            {DNNL_ARG_DIFF_SRC_ITER_C,
             memory(p->state, e, dc0->typed_data())},
            {DNNL_ARG_DIFF_WEIGHTS_LAYER, dwi_m},
            {DNNL_ARG_DIFF_WEIGHTS_ITER, dwh_m},
            {DNNL_ARG_DIFF_BIAS, memory(p->bias, e, db->typed_data())},
            {DNNL_ARG_SCRATCHPAD, scratch}});
    if (p->bwd_reorder_dwi)
      dnnl::reorder(dwi_m, dwi_user).execute(s, dwi_m, dwi_user);
    if (p->bwd_reorder_dwh)
      dnnl::reorder(dwh_m, dwh_user).execute(s, dwh_m, dwh_user);
    s.wait();
  });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MjxOnednnLstmFwd, FwdImpl,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // Wi
                                  .Arg<F32>()  // Wh
                                  .Arg<F32>()  // b
                                  .Arg<F32>()  // h0
                                  .Arg<F32>()  // c0
                                  .Ret<ffi::Buffer<ffi::F32>>()  // hs
                                  .Ret<ffi::Buffer<ffi::F32>>()  // h_T
                                  .Ret<ffi::Buffer<ffi::F32>>()  // c_T
                                  .Ret<ffi::Buffer<ffi::U8>>());  // ws

XLA_FFI_DEFINE_HANDLER_SYMBOL(MjxOnednnLstmBwd, BwdImpl,
                              ffi::Ffi::Bind()
                                  .Arg<F32>()  // x
                                  .Arg<F32>()  // Wi
                                  .Arg<F32>()  // Wh
                                  .Arg<F32>()  // b
                                  .Arg<F32>()  // h0
                                  .Arg<F32>()  // c0
                                  .Arg<F32>()  // hs
                                  .Arg<F32>()  // h_T
                                  .Arg<F32>()  // c_T
                                  .Arg<ffi::Buffer<ffi::U8>>()  // workspace
                                  .Arg<F32>()  // d_hs
                                  .Arg<F32>()  // d_hT
                                  .Arg<F32>()  // d_cT
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dx
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dWi
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dWh
                                  .Ret<ffi::Buffer<ffi::F32>>()  // db
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dh0
                                  .Ret<ffi::Buffer<ffi::F32>>());  // dc0

// Bytes of the forward workspace for this shape; -1 if oneDNN refuses it.
extern "C" int64_t mjx_onednn_workspace_bytes(int64_t T, int64_t B,
                                              int64_t D, int64_t H) {
  try {
    return static_cast<int64_t>(
        GetPlan(T, B, D, H)->fwd_pd.workspace_desc().get_size());
  } catch (...) {
    return -1;
  }
}
