// A check of kernels.cu without a GPU: the kernels compiled as host C++ (in double precision,
// one loop over the (block, thread) grid per launch), driven exactly as cuda.rs drives them (the
// same launches, arguments and row-major GEMM calls, with a plain column-major SGEMM standing in
// for cuBLAS), against a naive forward pass and central finite differences of a weighted sum of
// the result for every gradient (input, parameters, initial state). 40 cases: every kind, LSTM
// with and without projection, with and without biases, lengths and the reverse direction.
// It checks the kernels' math, indexing and masking and the orchestration as mirrored here; not
// cuda.rs itself, PTX loading or cuBLAS (only a GPU run of tests/cuda_fused.rs does).
//
//   g++ -std=c++17 -O1 -w crates/seqmodels/src/fused/cuda/host_emulation.cpp -o /tmp/host_emulation && /tmp/host_emulation
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <random>
#include <algorithm>
struct U3 { unsigned x, y, z; };
static U3 blockIdx, blockDim, threadIdx;
#define __global__
#define __device__
#define __forceinline__ inline
#define float double
#define expf exp
#define tanhf tanh
#include "kernels.cu"
#undef float
typedef double R;
typedef std::vector<R> V;

template <class F, class... A> void launch(int elems, F f, A... a) {
    blockDim.x = 256;
    int blocks = (elems + 255) / 256;
    for (int b = 0; b < blocks; ++b)
        for (int t = 0; t < 256; ++t) { blockIdx.x = b; threadIdx.x = t; f(a...); }
}
// column-major reference sgemm
void sgemm(bool ta, bool tb, int m, int n, int k, const R* A, int lda, const R* B, int ldb, R beta, R* C, int ldc) {
    for (int i = 0; i < m; ++i) for (int j = 0; j < n; ++j) {
        R s = 0;
        for (int l = 0; l < k; ++l) s += (ta ? A[l + i * lda] : A[i + l * lda]) * (tb ? B[j + l * ldb] : B[l + j * ldb]);
        C[i + j * ldc] = s + (beta == 0 ? 0 : beta * C[i + j * ldc]);
    }
}
// cuda.rs `gemm`: row-major C = op(A) op(B) + beta C as the column-major C^T = op(B)^T op(A)^T
void gemm(int m, int n, int k, const R* a, bool at, const R* b, bool bt, R* c, R beta) {
    if (!m || !n || !k) return;
    sgemm(bt, at, n, m, k, b, bt ? k : n, a, at ? m : k, beta, c, n);
}
enum Kind { LSTM, GRU, TANH, RELU };
struct D { Kind kind; int T, N, I, H, Ho; bool proj, bias, reverse; std::vector<int> len; };
int gates(const D& d) { return (d.kind == LSTM ? 4 : d.kind == GRU ? 3 : 1) * d.H; }
int plen(const D& d) { int g = gates(d); return g * d.I + (d.bias ? g : 0) + g * d.Ho + (d.bias ? g : 0) + (d.proj ? d.Ho * d.H : 0); }
int slen(const D& d) { return d.N * d.Ho + (d.kind == LSTM ? d.N * d.H : 0); }
int rlen(const D& d) { return (d.T + 1) * d.N * d.Ho + (d.kind == LSTM ? d.N * d.H : 0); }
struct P { const R *w_ih, *b_ih, *w_hh, *b_hh, *w_hr; };
P split(const D& d, const R* p) {
    int g = gates(d); P q; const R* at = p;
    q.w_ih = at; at += g * d.I; q.b_ih = d.bias ? at : nullptr; if (d.bias) at += g;
    q.w_hh = at; at += g * d.Ho; q.b_hh = d.bias ? at : nullptr; if (d.bias) at += g;
    q.w_hr = d.proj ? at : nullptr; return q;
}
std::vector<int> order(const D& d) { std::vector<int> o; for (int t = 0; t < d.T; ++t) o.push_back(d.reverse ? d.T - 1 - t : t); return o; }
struct Saved { V h_prev, act, c_prev, tanh_c, ghn, hh; };
R ph[1];  // the placeholder buffer
// cuda.rs `forward`: returns the packed result; fills `s` when given.
V forward(const D& d, const V& x, const V& params, const V& state0, Saved* s) {
    int n = d.N, h = d.H, ho = d.Ho, g = gates(d), tn = d.T * n;
    P p = split(d, params.data());
    V gi(tn * g); gemm(tn, g, d.I, x.data(), false, p.w_ih, true, gi.data(), 0);
    V result(rlen(d)); std::copy(state0.begin(), state0.end(), result.begin() + tn * ho);
    V gh(n * g), hh_step(n * h), hproj(n * ho);
    int save = s != nullptr;
    if (s) { s->h_prev.assign(tn * ho, 0); s->act.assign(tn * (g), 0); s->c_prev.assign(tn * h, 0); s->tanh_c.assign(tn * h, 0); s->ghn.assign(tn * h, 0); s->hh.assign(tn * h, 0); }
    const R* bi = p.b_ih ? p.b_ih : ph; const R* bh = p.b_hh ? p.b_hh : ph;
    for (int t : order(d)) {
        if (s) std::copy(result.begin() + tn * ho, result.begin() + tn * ho + n * ho, s->h_prev.begin() + t * n * ho);
        gemm(n, g, ho, result.data() + tn * ho, false, p.w_hh, true, gh.data(), 0);
        switch (d.kind) {
        case LSTM: launch(n * h, seqmodels_lstm_forward_step, (const R*)gi.data(), (const R*)gh.data(), bi, bh, (int)d.bias, d.len.data(), t, d.T, n, h, ho, (int)d.proj, save, result.data(), d.proj ? hh_step.data() : ph, s ? s->act.data() : ph, s ? s->c_prev.data() : ph, s ? s->tanh_c.data() : ph, (s && d.proj) ? s->hh.data() : ph); break;
        case GRU: launch(n * h, seqmodels_gru_forward_step, (const R*)gi.data(), (const R*)gh.data(), bi, bh, (int)d.bias, d.len.data(), t, d.T, n, h, save, result.data(), s ? s->act.data() : ph, s ? s->ghn.data() : ph); break;
        default: launch(n * h, seqmodels_rnn_forward_step, (const R*)gi.data(), (const R*)gh.data(), bi, bh, (int)d.bias, d.len.data(), t, d.T, n, h, (int)(d.kind == RELU), save, result.data(), s ? s->act.data() : ph);
        }
        if (d.proj) {
            gemm(n, ho, h, hh_step.data(), false, p.w_hr, true, hproj.data(), 0);
            launch(n * ho, seqmodels_proj_commit, (const R*)hproj.data(), d.len.data(), t, d.T, n, ho, result.data());
        }
    }
    return result;
}
// cuda.rs `CudaBackward::run`: returns [dx | dparams | dstate0]
V backward(const D& d, const V& x, const V& params, const V& dres, const Saved& s) {
    int n = d.N, h = d.H, ho = d.Ho, g = gates(d), tn = d.T * n, i = d.I;
    P p = split(d, params.data());
    int end = tn * ho;
    V dh(dres.begin() + end, dres.begin() + end + n * ho);
    V dc(n * h); if (d.kind == LSTM) std::copy(dres.begin() + end + n * ho, dres.begin() + end + n * ho + n * h, dc.begin());
    V dgi(tn * g), dgh(tn * g), dproj(tn * ho), dhh(n * h);
    bool gru = d.kind == GRU;
    auto ord = order(d); std::reverse(ord.begin(), ord.end());
    for (int t : ord) {
        if (d.proj) {
            launch(n * ho, seqmodels_proj_backward_step, dres.data(), d.len.data(), t, n, ho, dh.data(), dproj.data());
            gemm(n, h, ho, dproj.data() + t * n * ho, false, p.w_hr, false, dhh.data(), 0);
        }
        switch (d.kind) {
        case LSTM: launch(n * h, seqmodels_lstm_backward_step, dres.data(), d.len.data(), t, n, h, (int)d.proj, (const R*)(d.proj ? dhh.data() : ph), dh.data(), dc.data(), s.act.data(), s.c_prev.data(), s.tanh_c.data(), dgi.data()); break;
        case GRU: launch(n * h, seqmodels_gru_backward_step, dres.data(), d.len.data(), t, n, h, dh.data(), s.act.data(), s.ghn.data(), s.h_prev.data(), dgi.data(), dgh.data()); break;
        default: launch(n * h, seqmodels_rnn_backward_step, dres.data(), d.len.data(), t, n, h, (int)(d.kind == RELU), dh.data(), s.act.data(), dgi.data());
        }
        const R* dg = gru ? dgh.data() : dgi.data();
        gemm(n, ho, g, dg + t * n * g, false, p.w_hh, false, dh.data(), 1);
    }
    V out(tn * i + plen(d) + slen(d)); V ones(tn, 1.0);
    const R* dgh_ = gru ? dgh.data() : dgi.data();
    int at = 0; auto next = [&](int l) { at += l; return out.data() + at - l; };
    gemm(tn, i, g, dgi.data(), false, p.w_ih, false, next(tn * i), 0);
    gemm(g, i, tn, dgi.data(), true, x.data(), false, next(g * i), 0);
    if (d.bias) gemm(1, g, tn, ones.data(), false, dgi.data(), false, next(g), 0);
    gemm(g, ho, tn, dgh_, true, s.h_prev.data(), false, next(g * ho), 0);
    if (d.bias) gemm(1, g, tn, ones.data(), false, dgh_, false, next(g), 0);
    if (d.proj) gemm(ho, h, tn, dproj.data(), true, s.hh.data(), false, next(ho * h), 0);
    std::copy(dh.begin(), dh.end(), next(n * ho));
    if (d.kind == LSTM) std::copy(dc.begin(), dc.end(), next(n * h));
    return out;
}
// naive forward straight from the cell equations
V naive(const D& d, const V& x, const V& params, const V& state0) {
    int n = d.N, h = d.H, ho = d.Ho, g = gates(d);
    P p = split(d, params.data());
    V out((d.T + 1) * n * ho + (d.kind == LSTM ? n * h : 0), 0.0);
    V H(state0.begin(), state0.begin() + n * ho), C(n * h);
    if (d.kind == LSTM) std::copy(state0.begin() + n * ho, state0.end(), C.begin());
    auto sig = [](R v) { return 1 / (1 + std::exp(-v)); };
    for (int t : order(d)) for (int b = 0; b < n; ++b) {
        if (t >= d.len[b]) continue;
        V ai(g), ah(g);
        for (int q = 0; q < g; ++q) {
            R s1 = d.bias ? p.b_ih[q] : 0, s2 = d.bias ? p.b_hh[q] : 0;
            for (int k = 0; k < d.I; ++k) s1 += p.w_ih[q * d.I + k] * x[(t * n + b) * d.I + k];
            for (int k = 0; k < ho; ++k) s2 += p.w_hh[q * ho + k] * H[b * ho + k];
            ai[q] = s1; ah[q] = s2;
        }
        V hn(ho);
        if (d.kind == LSTM) {
            V hh(h);
            for (int j = 0; j < h; ++j) {
                R ig = sig(ai[j] + ah[j]), fg = sig(ai[h + j] + ah[h + j]), gg = std::tanh(ai[2 * h + j] + ah[2 * h + j]), og = sig(ai[3 * h + j] + ah[3 * h + j]);
                C[b * h + j] = fg * C[b * h + j] + ig * gg; hh[j] = og * std::tanh(C[b * h + j]);
            }
            for (int k = 0; k < ho; ++k) { if (!d.proj) hn[k] = hh[k]; else { R s = 0; for (int j = 0; j < h; ++j) s += p.w_hr[k * h + j] * hh[j]; hn[k] = s; } }
        } else if (d.kind == GRU) {
            for (int j = 0; j < h; ++j) {
                R r = sig(ai[j] + ah[j]), z = sig(ai[h + j] + ah[h + j]), nn = std::tanh(ai[2 * h + j] + r * ah[2 * h + j]);
                hn[j] = (1 - z) * nn + z * H[b * ho + j];
            }
        } else for (int j = 0; j < h; ++j) { R v = ai[j] + ah[j]; hn[j] = d.kind == TANH ? std::tanh(v) : std::max(v, 0.0); }
        for (int k = 0; k < ho; ++k) { H[b * ho + k] = hn[k]; out[(t * n + b) * ho + k] = hn[k]; }
    }
    std::copy(H.begin(), H.end(), out.begin() + d.T * n * ho);
    if (d.kind == LSTM) std::copy(C.begin(), C.end(), out.begin() + (d.T + 1) * n * ho);
    return out;
}
std::mt19937 rng(1);
V rnd(int len) { std::uniform_real_distribution<R> u(-1, 1); V v(len); for (auto& e : v) e = u(rng); return v; }
R dot(const V& a, const V& b) { R s = 0; for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i]; return s; }
int main() {
    int fails = 0, cases = 0;
    for (Kind kind : {LSTM, GRU, TANH, RELU}) for (int proj : {0, 1}) for (int bias : {0, 1}) for (int rev : {0, 1}) for (int lens : {0, 1}) {
        if (proj && kind != LSTM) continue;
        D d{kind, 5, 3, 3, 4, proj ? 2 : 4, (bool)proj, (bool)bias, (bool)rev, lens ? std::vector<int>{5, 2, 4} : std::vector<int>{5, 5, 5}};
        V x = rnd(d.T * d.N * d.I), params = rnd(plen(d)), s0 = rnd(slen(d));
        for (auto& e : params) e *= 0.7;
        Saved sv; V res = forward(d, x, params, s0, &sv);
        V ref = naive(d, x, params, s0);
        V res2 = forward(d, x, params, s0, nullptr);
        R ferr = 0; for (size_t k = 0; k < ref.size(); ++k) ferr = std::max(ferr, std::max(std::fabs(ref[k] - res[k]), std::fabs(res2[k] - res[k])));
        V w = rnd(rlen(d));
        V grad = backward(d, x, params, w, sv);
        // finite differences of L = <w, forward(x, params, s0)>
        V all; all.insert(all.end(), x.begin(), x.end()); all.insert(all.end(), params.begin(), params.end()); all.insert(all.end(), s0.begin(), s0.end());
        R gerr = 0; const R eps = 1e-6;
        for (size_t k = 0; k < all.size(); ++k) {
            auto eval = [&](R delta) {
                V a = all; a[k] += delta;
                V xx(a.begin(), a.begin() + x.size()), pp(a.begin() + x.size(), a.begin() + x.size() + params.size()), ss(a.begin() + x.size() + params.size(), a.end());
                return dot(w, forward(d, xx, pp, ss, nullptr));
            };
            R fd = (eval(eps) - eval(-eps)) / (2 * eps);
            gerr = std::max(gerr, std::fabs(fd - grad[k]));
        }
        bool ok = ferr < 1e-12 && gerr < 1e-6;
        ++cases; if (!ok) ++fails;
        if (!ok || cases % 8 == 0) printf("kind=%d proj=%d bias=%d rev=%d lens=%d: forward err %.2e, grad err %.2e %s\n", kind, proj, bias, rev, lens, ferr, gerr, ok ? "ok" : "FAIL");
    }
    printf("%d cases, %d failed\n", cases, fails);
    return fails != 0;
}
