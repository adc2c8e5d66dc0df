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
   (params [W]: alpha), 3 ReLU; applied to the accumulators while they are in registers
   (Dice's sigmoid through vexp below: at 1,000 behaviors x 100 candidates a separate pass over
   each [4, W] block cost ~2 of ~19 ms).

   With threads > 1, threads - 1 POSIX threads join the calling one, each with its own
   scratch, taking CHUNK candidates at a time from a shared counter until none is left, so
   one long-history request can use idle cores, and a thread that another process delays
   takes fewer chunks instead of holding the others up (one join per call, unlike an
   OpenMP barrier per op). The scores are the same whatever the split: each (candidate,
   behavior) pair is computed by the same instructions.

   Built with -ffast-math at compile time only, like dice.c. Returns 0, or 1 when out of
   memory. */

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16 /* floats per vector */
#define ROWS 4   /* behaviors per block: one weight load feeds ROWS multiply-adds */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

static inline vec load(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }
static inline void store(float *p, vec v) { memcpy(p, &v, sizeof v); }

typedef int32_t ivec __attribute__((vector_size(LANES * sizeof(int32_t))));

static inline vec splat(float x) { return (vec){0} + x; }

static inline vec clamp(vec x, float lo, float hi) {
    ivec below = x < lo, above = x > hi;
    ivec bits = (ivec)x;
    bits = (below & (ivec)splat(lo)) | (~below & bits);
    return (vec)((above & (ivec)splat(hi)) | (~above & bits));
}

/* e^x, relative error ~2e-7 over the clamped range [-87, 88]: x = n ln2 + r with
   n = floor(x log2(e) + 1/2) (truncating a positive number), |r| <= ln2 / 2, e^r by its
   degree-6 Taylor polynomial, 2^n written into the exponent bits. */
static inline vec vexp(vec x) {
    x = clamp(x, -87.0f, 88.0f);
    ivec biased = __builtin_convertvector(x * 1.44269504088896341f + 127.5f, ivec);
    vec n = __builtin_convertvector(biased, vec) - 127.0f;
    vec r = x - n * 0.693359375f - n * -2.12194440e-4f;
    vec p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120
            + r * (1.0f / 720))))));
    return p * (vec)(biased << 23);
}

/* y[r] = act(bias + x[r] @ w) for ROWS rows: x [ROWS, in] (row stride in), w [in, out],
   y [ROWS, out]; out is a multiple of LANES. The activation runs on the accumulators while
   they are in registers (act: 0 none, 1 Dice with params [3 out] mean, invstd, alpha,
   2 PReLU with params [out] alpha, 3 ReLU). */
static void dense(int64_t in, int64_t out, const float *restrict x, const float *restrict w,
                  const float *restrict bias, int64_t act, const float *restrict params,
                  float *restrict y) {
    for (int64_t j = 0; j < out; j += LANES) {
        vec b = load(bias + j), acc[ROWS];
        for (int r = 0; r < ROWS; r++) acc[r] = b;
        for (int64_t k = 0; k < in; k++) {
            vec wk = load(w + k * out + j);
            for (int r = 0; r < ROWS; r++) acc[r] += x[r * in + k] * wk;
        }
        if (act == 1) {
            vec mean = load(params + j), invstd = load(params + out + j);
            vec alpha = load(params + 2 * out + j), gate = 1.0f - alpha;
            for (int r = 0; r < ROWS; r++) {
                vec s = 1.0f / (1.0f + vexp((mean - acc[r]) * invstd));
                acc[r] *= alpha + gate * s;
            }
        } else if (act == 2) {
            vec alpha = load(params + j);
            for (int r = 0; r < ROWS; r++) {
                ivec neg = acc[r] < 0.0f;
                vec scaled = acc[r] * alpha;
                acc[r] = (vec)((neg & (ivec)scaled) | (~neg & (ivec)acc[r]));
            }
        } else if (act == 3) {
            for (int r = 0; r < ROWS; r++) acc[r] = (vec)((ivec)acc[r] & ~(acc[r] < 0.0f));
        }
        for (int r = 0; r < ROWS; r++) store(y + r * out + j, acc[r]);
    }
}

/* The arguments of one call, shared by its threads. */
struct unit {
    int64_t c, t, e, layers, chunk;
    _Atomic int64_t next; /* the first candidate no thread has taken yet */
    const float *keys, *queries, *w_k, *w_p, *w_q, *b_first, *w_out;
    const int64_t *widths, *acts;
    const float *const *weights, *const *biases, *const *params;
    float b_out;
    float *scores;
};

/* Candidate ci's scores for all T behaviors; its a_c (E x W_0 floats) stays in L1
   throughout. k_all: the keys with zero rows up to a whole block (their scores are never
   written); x, y: [ROWS, widest] activations; a, qb: a_c [E, W_0] and b_c [W_0]. */
static void run_candidate(const struct unit *u, int64_t ci, const float *k_all, float *x,
                          float *y, float *a, float *qb) {
    int64_t t = u->t, e = u->e, layers = u->layers, w0 = u->widths[0];
    int64_t last = u->widths[layers - 1];
    const float *q = u->queries + ci * e;
    memcpy(qb, u->b_first, w0 * sizeof(float));
    for (int64_t k = 0; k < e; k++) {
        for (int64_t j = 0; j < w0; j++) {
            a[k * w0 + j] = u->w_k[k * w0 + j] + q[k] * u->w_p[k * w0 + j];
            qb[j] += q[k] * u->w_q[k * w0 + j];
        }
    }
    for (int64_t t0 = 0; t0 < t; t0 += ROWS) {
        int64_t rows = t - t0 < ROWS ? t - t0 : ROWS;
        dense(e, w0, k_all + t0 * e, a, qb, u->acts[0], u->params[0], x);
        for (int64_t l = 1; l < layers; l++) {
            dense(u->widths[l - 1], u->widths[l], x, u->weights[l - 1], u->biases[l - 1],
                  u->acts[l], u->params[l], y);
            float *swap = x;
            x = y;
            y = swap;
        }
        for (int64_t r = 0; r < rows; r++) {
            float s = u->b_out;
            for (int64_t j = 0; j < last; j++) s += x[r * last + j] * u->w_out[j];
            u->scores[ci * t + t0 + r] = s;
        }
    }
}

/* One thread's work: chunks of candidates from u->next until all are taken. A thread
   without scratch memory takes none, leaving them to the others. */
static void run_worker(struct unit *u) {
    int64_t t = u->t, e = u->e, w0 = u->widths[0];
    int64_t widest = e, padded = (t + ROWS - 1) / ROWS * ROWS;
    for (int64_t l = 0; l < u->layers; l++) widest = u->widths[l] > widest ? u->widths[l] : widest;
    float *scratch = calloc(padded * e + 2 * ROWS * widest + (e + 1) * w0, sizeof(float));
    if (!scratch) return;
    float *x = scratch + padded * e, *y = x + ROWS * widest, *a = y + ROWS * widest;
    memcpy(scratch, u->keys, t * e * sizeof(float));
    for (int64_t c0; (c0 = atomic_fetch_add(&u->next, u->chunk)) < u->c;) {
        int64_t c1 = c0 + u->chunk < u->c ? c0 + u->chunk : u->c;
        for (int64_t ci = c0; ci < c1; ci++) run_candidate(u, ci, scratch, x, y, a, a + e * w0);
    }
    free(scratch);
}

static void *run_thread(void *u) {
    run_worker(u);
    return NULL;
}

#define MAX_THREADS 64

int dinrec_unit_scores(int64_t c, int64_t t, int64_t e, const float *restrict keys,
                       const float *restrict queries, const float *restrict w_k,
                       const float *restrict w_p, const float *restrict w_q,
                       const float *restrict b_first, int64_t layers,
                       const int64_t *restrict widths, const float *const *weights,
                       const float *const *biases, const int64_t *restrict acts,
                       const float *const *params, const float *restrict w_out, float b_out,
                       float *restrict scores, int64_t threads) {
    if (threads > c) threads = c;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 1) threads = 1;
    /* ~8 chunks per thread: few counter updates, and room to even out a delayed thread. */
    int64_t chunk = c / (threads * 8) > 1 ? c / (threads * 8) : 1;
    struct unit u = {c, t, e, layers, chunk, 0, keys, queries, w_k, w_p, w_q, b_first, w_out,
                     widths, acts, weights, biases, params, b_out, scores};
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    /* A thread that cannot be started is simply missing: the others take its chunks. */
    for (int64_t i = 1; i < threads; i++)
        started[i] = pthread_create(&ids[i], NULL, run_thread, &u) == 0;
    run_worker(&u);
    for (int64_t i = 1; i < threads; i++) {
        if (started[i]) pthread_join(ids[i], NULL);
    }
    /* Every chunk was taken unless no thread got scratch memory. */
    return atomic_load(&u.next) < c ? 1 : 0;
}
