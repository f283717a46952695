// Elementwise kernels of the fused recurrence on CUDA (f32). The matrix products around them
// (input projection, recurrent product, projection, weight gradients) are cuBLAS calls made from
// cuda.rs; these kernels do everything between two products of one time step.
//
// Layouts (all row-major, time-major, as in sequence.rs):
//   gi      (T, N, G)  x W_ih^T, WITHOUT b_ih (added here)
//   gh      (N, G)     h W_hh^T of the current step, WITHOUT b_hh (added here)
//   result  output (T, N, Ho) | h (N, Ho) | c (N, H) for LSTM; h and c are the running state
//           (they start as h0 and c0 and end as h_n and c_n)
//   lengths (N)        row n is active at time t iff t < lengths[n]
//   G = gates * H; gate q of unit j of a row is element q * H + j (PyTorch's order:
//   LSTM i, f, g, o; GRU r, z, n).
// One thread per (row n, unit j). Rows that are inactive at time t keep their state and write
// nothing (their output stays zero); in backward they pass the state gradients through unchanged
// and write zero gate gradients.
//
// Saved buffers (written only when `save` is set, only for active rows; zero elsewhere):
//   act     LSTM/GRU: gate activations (T, N, G); RNN: h' (T, N, H)
//   c_prev  LSTM: c before the step (T, N, H);  tanh_c: LSTM: tanh(c') (T, N, H)
//   ghn     GRU: h W_hn^T + b_hn (T, N, H);     hh: LSTM with projection: o * tanh(c') (T, N, H)

__device__ __forceinline__ float seq_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// Bias of gate element k, or 0 without biases.
__device__ __forceinline__ float seq_bias(const float* b, int bias, int k) { return bias ? b[k] : 0.0f; }

// LSTM forward of step t. Without projection h = o * tanh(c') goes straight to the state and the
// output; with it, hh = o * tanh(c') goes to `hh_step` (N, H) (zero for inactive rows) and
// seqmodels_proj_commit stores the projected state after the product with W_hr.
extern "C" __global__ void seqmodels_lstm_forward_step(const float* gi, const float* gh, const float* b_ih,
                                                       const float* b_hh, int bias, const int* lengths, int t,
                                                       int T, int N, int H, int Ho, int proj, int save,
                                                       float* result, float* hh_step, float* act, float* c_prev,
                                                       float* tanh_c, float* saved_hh) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * H) return;
    int n = idx / H, j = idx - n * H, G = 4 * H;
    if (t >= lengths[n]) {
        if (proj) hh_step[idx] = 0.0f;
        return;
    }
    const float* gi_row = gi + ((long long)t * N + n) * G;
    const float* gh_row = gh + (long long)n * G;
    float pre[4];
    for (int q = 0; q < 4; ++q) {
        int k = q * H + j;
        pre[q] = gi_row[k] + seq_bias(b_ih, bias, k) + gh_row[k] + seq_bias(b_hh, bias, k);
    }
    float i = seq_sigmoid(pre[0]), f = seq_sigmoid(pre[1]), g = tanhf(pre[2]), o = seq_sigmoid(pre[3]);
    float* h = result + (long long)T * N * Ho;
    float* c = h + (long long)N * Ho;
    float cp = c[idx];
    float cn = f * cp + i * g;
    float tc = tanhf(cn);
    float hh = o * tc;
    c[idx] = cn;
    if (save) {
        long long at = ((long long)t * N + n) * H + j;
        long long ga = ((long long)t * N + n) * G + j;
        act[ga] = i;
        act[ga + H] = f;
        act[ga + 2 * H] = g;
        act[ga + 3 * H] = o;
        c_prev[at] = cp;
        tanh_c[at] = tc;
        if (proj) saved_hh[at] = hh;
    }
    if (proj) {
        hh_step[idx] = hh;
    } else {
        h[idx] = hh;
        result[((long long)t * N + n) * Ho + j] = hh;
    }
}

// LSTM with projection, after hproj = hh W_hr^T: the new state and output of the active rows.
// One thread per (n, j < Ho).
extern "C" __global__ void seqmodels_proj_commit(const float* hproj, const int* lengths, int t, int T, int N,
                                                 int Ho, float* result) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * Ho) return;
    int n = idx / Ho, j = idx - n * Ho;
    if (t >= lengths[n]) return;
    float v = hproj[idx];
    result[(long long)T * N * Ho + idx] = v;
    result[((long long)t * N + n) * Ho + j] = v;
}

// GRU forward of step t: r, z from gi + gh, n = tanh(gi_n + b_in + r * (gh_n + b_hn)),
// h' = n + z * (h - n) (= (1 - z) * n + z * h). Ho == H.
extern "C" __global__ void seqmodels_gru_forward_step(const float* gi, const float* gh, const float* b_ih,
                                                      const float* b_hh, int bias, const int* lengths, int t, int T,
                                                      int N, int H, int save, float* result, float* act,
                                                      float* ghn) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * H) return;
    int n = idx / H, j = idx - n * H, G = 3 * H;
    if (t >= lengths[n]) return;
    const float* gi_row = gi + ((long long)t * N + n) * G;
    const float* gh_row = gh + (long long)n * G;
    int kr = j, kz = H + j, kn = 2 * H + j;
    float r = seq_sigmoid(gi_row[kr] + seq_bias(b_ih, bias, kr) + gh_row[kr] + seq_bias(b_hh, bias, kr));
    float z = seq_sigmoid(gi_row[kz] + seq_bias(b_ih, bias, kz) + gh_row[kz] + seq_bias(b_hh, bias, kz));
    float hn_part = gh_row[kn] + seq_bias(b_hh, bias, kn);
    float nn = tanhf(gi_row[kn] + seq_bias(b_ih, bias, kn) + r * hn_part);
    float* h = result + (long long)T * N * H;
    float hp = h[idx];
    float hnew = nn + z * (hp - nn);
    if (save) {
        long long at = ((long long)t * N + n) * H + j;
        long long ga = ((long long)t * N + n) * G + j;
        act[ga] = r;
        act[ga + H] = z;
        act[ga + 2 * H] = nn;
        ghn[at] = hn_part;
    }
    h[idx] = hnew;
    result[((long long)t * N + n) * H + j] = hnew;
}

// Elman RNN forward of step t: h' = tanh(pre) or relu(pre), pre = gi + b_ih + gh + b_hh.
extern "C" __global__ void seqmodels_rnn_forward_step(const float* gi, const float* gh, const float* b_ih,
                                                      const float* b_hh, int bias, const int* lengths, int t, int T,
                                                      int N, int H, int relu, int save, float* result, float* act) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * H) return;
    int n = idx / H, j = idx - n * H;
    if (t >= lengths[n]) return;
    long long at = ((long long)t * N + n) * H + j;
    float pre = gi[at] + seq_bias(b_ih, bias, j) + gh[idx] + seq_bias(b_hh, bias, j);
    float hnew = relu ? (pre > 0.0f ? pre : 0.0f) : tanhf(pre);
    if (save) act[at] = hnew;
    result[(long long)T * N * H + idx] = hnew;
    result[at] = hnew;
}

// LSTM with projection, backward of step t, first part (one thread per (n, j < Ho)): the gradient
// of the projected h of the active rows, dproj[t] = dh + doutput[t], which then flows into hh
// through W_hr (a product in cuda.rs); their dh restarts at zero (the product with W_hh adds the
// rest). Inactive rows: dproj[t] = 0 and dh passes through.
extern "C" __global__ void seqmodels_proj_backward_step(const float* dresult, const int* lengths, int t, int N,
                                                        int Ho, float* dh, float* dproj) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * Ho) return;
    int n = idx / Ho, j = idx - n * Ho;
    long long at = ((long long)t * N + n) * Ho + j;
    if (t >= lengths[n]) {
        dproj[at] = 0.0f;
        return;
    }
    dproj[at] = dh[idx] + dresult[at];
    dh[idx] = 0.0f;
}

// LSTM backward of step t: the gradients of the gate pre-activations (T, N, 4H) and dc.
// Without projection the gradient of h' is dh + doutput[t] and dh restarts at zero for active
// rows; with projection it is dhh (N, H), computed from dproj[t] W_hr.
extern "C" __global__ void seqmodels_lstm_backward_step(const float* dresult, const int* lengths, int t, int N,
                                                        int H, int proj, const float* dhh, float* dh, float* dc,
                                                        const float* act, const float* c_prev,
                                                        const float* tanh_c, float* dgates) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * H) return;
    int n = idx / H, j = idx - n * H, G = 4 * H;
    long long ga = ((long long)t * N + n) * G + j;
    if (t >= lengths[n]) {
        for (int q = 0; q < 4; ++q) dgates[ga + q * H] = 0.0f;
        return;
    }
    long long at = ((long long)t * N + n) * H + j;
    float dht;
    if (proj) {
        dht = dhh[idx];
    } else {
        dht = dh[idx] + dresult[at];
        dh[idx] = 0.0f;
    }
    float i = act[ga], f = act[ga + H], g = act[ga + 2 * H], o = act[ga + 3 * H];
    float tc = tanh_c[at];
    float dct = dc[idx] + dht * o * (1.0f - tc * tc);
    dgates[ga] = dct * g * i * (1.0f - i);
    dgates[ga + H] = dct * c_prev[at] * f * (1.0f - f);
    dgates[ga + 2 * H] = dct * i * (1.0f - g * g);
    dgates[ga + 3 * H] = dht * tc * o * (1.0f - o);
    dc[idx] = dct * f;
}

// GRU backward of step t: the gradients of the input part (dgi) and of the hidden part (dgh) of
// the gates, which differ in the n gate (dgh_n = dn * r); dh of active rows becomes the direct
// part dh' * z (the product with W_hh adds the rest).
extern "C" __global__ void seqmodels_gru_backward_step(const float* dresult, const int* lengths, int t, int N,
                                                       int H, float* dh, const float* act, const float* ghn,
                                                       const float* h_prev, float* dgi, float* dgh) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * H) return;
    int n = idx / H, j = idx - n * H, G = 3 * H;
    long long ga = ((long long)t * N + n) * G + j;
    if (t >= lengths[n]) {
        for (int q = 0; q < 3; ++q) {
            dgi[ga + q * H] = 0.0f;
            dgh[ga + q * H] = 0.0f;
        }
        return;
    }
    long long at = ((long long)t * N + n) * H + j;
    float dht = dh[idx] + dresult[at];
    float r = act[ga], z = act[ga + H], nn = act[ga + 2 * H];
    float dn = dht * (1.0f - z) * (1.0f - nn * nn);
    float dz = dht * (h_prev[at] - nn) * z * (1.0f - z);
    float dr = dn * ghn[at] * r * (1.0f - r);
    dgi[ga] = dr;
    dgi[ga + H] = dz;
    dgi[ga + 2 * H] = dn;
    dgh[ga] = dr;
    dgh[ga + H] = dz;
    dgh[ga + 2 * H] = dn * r;
    dh[idx] = dht * z;
}

// Elman RNN backward of step t: the gradient of the pre-activation from dh' = dh + doutput[t]
// and the saved h'; dh of active rows restarts at zero.
extern "C" __global__ void seqmodels_rnn_backward_step(const float* dresult, const int* lengths, int t, int N,
                                                       int H, int relu, float* dh, const float* act, float* dgates) {
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= N * H) return;
    int n = idx / H;
    long long at = (long long)t * N * H + idx;
    if (t >= lengths[n]) {
        dgates[at] = 0.0f;
        return;
    }
    float dht = dh[idx] + dresult[at];
    float hn = act[at];
    dgates[at] = relu ? (hn > 0.0f ? dht : 0.0f) : dht * (1.0f - hn * hn);
    dh[idx] = 0.0f;
}
