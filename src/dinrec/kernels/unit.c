/* DIN's activation unit in eval mode, for one user's behaviors against C candidates: every
   (candidate, behavior) pair goes through the whole MLP while its activations sit in L1.

   Eager torch (serving/broadcast.py) runs each layer over all C * T pairs at once: for 100
   candidates x 50 behaviors the [5000, 80] and [5000, 40] activations (1.6 / 0.8 MB) leave
   L2, and each of the ~10 passes (two GEMMs, five for each Dice, the output layer) streams
   them from L3. Here four behaviors at a time go through every layer, in registers and a
   few kB of scratch.

   Per candidate c and behavior t (all widths padded to a multiple of LANES by the caller,
   with zero weights, so padded columns stay exactly 0 through Dice, PReLU and ReLU):
       a_c = w_k + diag(q_c) w_p,  b_c = q_c @ w_q + b   the first layer split as in
                                                   serving/broadcast.py; w_k, w_p, w_q [E, W_0]
       h_0 = act_0(keys[t] @ a_c + b_c)              keys [T, E], queries q [C, E]
       h_l = act_l(h_{l-1} @ w_l + b_l)              w_l [W_{l-1}, W_l] (transposed Linear)
       scores[c, t] = h_{L-1} . w_out + b_out
   act: 0 none, 1 Dice with fixed statistics (params [3 W]: mean, invstd, alpha), 2 PReLU
   (params [W]: alpha), 3 ReLU.

   Built with -ffast-math at compile time only, like dice.c. Returns 0, or 1 when out of
   memory. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16 /* floats per vector */
#define ROWS 4   /* behaviors per block: one weight load feeds ROWS multiply-adds */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

static inline vec load(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }
static inline void store(float *p, vec v) { memcpy(p, &v, sizeof v); }

/* y[r] = bias + x[r] @ w for ROWS rows: x [ROWS, in] (row stride in), w [in, out],
   y [ROWS, out]; out is a multiple of LANES. */
static void dense(int64_t in, int64_t out, const float *restrict x, const float *restrict w,
                  const float *restrict bias, float *restrict y) {
    for (int64_t j = 0; j < out; j += LANES) {
        vec b = load(bias + j), a0 = b, a1 = b, a2 = b, a3 = b;
        const float *x0 = x, *x1 = x + in, *x2 = x + 2 * in, *x3 = x + 3 * in;
        for (int64_t k = 0; k < in; k++) {
            vec wk = load(w + k * out + j);
            a0 += x0[k] * wk;
            a1 += x1[k] * wk;
            a2 += x2[k] * wk;
            a3 += x3[k] * wk;
        }
        store(y + j, a0);
        store(y + out + j, a1);
        store(y + 2 * out + j, a2);
        store(y + 3 * out + j, a3);
    }
}

static void activate(int64_t act, const float *restrict params, int64_t width,
                     float *restrict y) {
    if (act == 1) {
        const float *mean = params, *invstd = params + width, *alpha = params + 2 * width;
        for (int64_t r = 0; r < ROWS; r++) {
            float *v = y + r * width;
            for (int64_t j = 0; j < width; j++) {
                float s = 1.0f / (1.0f + expf(-(v[j] - mean[j]) * invstd[j]));
                v[j] *= alpha[j] + (1.0f - alpha[j]) * s;
            }
        }
    } else if (act == 2) {
        for (int64_t r = 0; r < ROWS; r++) {
            float *v = y + r * width;
            for (int64_t j = 0; j < width; j++) v[j] = v[j] > 0 ? v[j] : params[j] * v[j];
        }
    } else if (act == 3) {
        for (int64_t i = 0; i < ROWS * width; i++) y[i] = y[i] > 0 ? y[i] : 0.0f;
    }
}

int dinrec_unit_scores(int64_t c, int64_t t, int64_t e, const float *restrict keys,
                       const float *restrict queries, const float *restrict w_k,
                       const float *restrict w_p, const float *restrict w_q,
                       const float *restrict b_first, int64_t layers,
                       const int64_t *restrict widths, const float *const *weights,
                       const float *const *biases, const int64_t *restrict acts,
                       const float *const *params, const float *restrict w_out, float b_out,
                       float *restrict scores) {
    int64_t widest = e, padded = (t + ROWS - 1) / ROWS * ROWS;
    for (int64_t l = 0; l < layers; l++) widest = widths[l] > widest ? widths[l] : widest;
    int64_t w0 = widths[0];
    float *scratch = calloc(padded * e + 2 * ROWS * widest + (e + 1) * w0, sizeof(float));
    if (!scratch) return 1;
    /* The keys with zero rows up to a whole block (their scores are never written). */
    float *k_all = scratch, *x = scratch + padded * e, *y = x + ROWS * widest;
    float *a = y + ROWS * widest, *qb = a + e * w0; /* a_c [E, W_0], b_c [W_0] */
    memcpy(k_all, keys, t * e * sizeof(float));
    int64_t last = widths[layers - 1];
    /* Candidate outer: its a_c (E x W_0 floats) stays in L1 for all T behaviors. */
    for (int64_t ci = 0; ci < c; ci++) {
        const float *q = queries + ci * e;
        memcpy(qb, b_first, w0 * sizeof(float));
        for (int64_t k = 0; k < e; k++) {
            for (int64_t j = 0; j < w0; j++) {
                a[k * w0 + j] = w_k[k * w0 + j] + q[k] * w_p[k * w0 + j];
                qb[j] += q[k] * w_q[k * w0 + j];
            }
        }
        for (int64_t t0 = 0; t0 < t; t0 += ROWS) {
            int64_t rows = t - t0 < ROWS ? t - t0 : ROWS;
            dense(e, w0, k_all + t0 * e, a, qb, x);
            activate(acts[0], params[0], widths[0], x);
            for (int64_t l = 1; l < layers; l++) {
                dense(widths[l - 1], widths[l], x, weights[l - 1], biases[l - 1], y);
                activate(acts[l], params[l], widths[l], y);
                float *swap = x;
                x = y;
                y = swap;
            }
            for (int64_t r = 0; r < rows; r++) {
                float s = b_out;
                for (int64_t j = 0; j < last; j++) s += x[r * last + j] * w_out[j];
                scores[ci * t + t0 + r] = s;
            }
        }
    }
    free(scratch);
    return 0;
}
