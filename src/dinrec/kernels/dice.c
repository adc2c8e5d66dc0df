/* Dice's training forward and backward (DIN paper, eq. 9) in two passes each over [n, h].

   f(x) = x * (alpha + (1 - alpha) * p),  p = sigmoid((x - mean) * invstd),
   with mean / invstd the per-column batch statistics of the n rows (biased variance).

   The eager torch version is ~17 passes over the [n, h] activations of DIN's activation
   unit (batch norm, sigmoid, the factor, and a backward of ~11 element-wise ops); at
   n ~ 9k, h = 64 those arrays (2.3 MiB each) do not fit in L2, so each pass streams from
   L3. Here: forward = one statistics pass + one output pass; backward = one reduction pass
   + one gradient pass.

   Optional row bias: the input is x[i, :] + bias[rows[i], :] (bias [b, h], rows [n] in
   [0, b)), i.e. the activation unit's first layer, whose query part is computed once per
   sample and shared by that sample's behaviors. The bias is added on the fly in every pass
   (its rows stay in cache), so the sum is never materialised, and its gradient (the
   per-sample sum of the rows' gradients) is accumulated in the gradient pass.

   All arrays are row-major float32; the caller (dinrec/kernels/dice.py) checks shapes,
   dtypes and contiguity. Built with -ffast-math at compile time only (not at link time,
   which would set the process's flush-to-zero flags). Returns 0, or 1 when out of memory. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define LANES 16      /* columns per vector block */
#define ROW_BLOCK 64  /* rows summed in float before adding to the double totals */

typedef float vec __attribute__((vector_size(LANES * sizeof(float))));

static inline vec load(const float *p) { vec v; memcpy(&v, p, sizeof v); return v; }

static inline float sigmoid(float u) { return 1.0f / (1.0f + expf(-u)); }

/* Value of the input at (i, j): x plus the row's bias. */
static inline float value(const float *x, const float *bias, const int64_t *rows, int64_t h,
                          int64_t i, int64_t j) {
    return x[i * h + j] + (bias ? bias[rows[i] * h + j] : 0.0f);
}

/* Column sums of (v - shift) and of its square over the n rows into sums / squares [h]
   (double, zeroed by the caller). */
static void moment_sums(int64_t n, int64_t h, const float *restrict x,
                        const float *restrict bias, const int64_t *restrict rows,
                        const float *restrict shift, double *restrict sums,
                        double *restrict squares) {
    for (int64_t r0 = 0; r0 < n; r0 += ROW_BLOCK) {
        int64_t r1 = r0 + ROW_BLOCK < n ? r0 + ROW_BLOCK : n;
        int64_t j0 = 0;
        for (; j0 + LANES <= h; j0 += LANES) {
            vec s = {0}, q = {0}, sh = load(shift + j0);
            for (int64_t i = r0; i < r1; i++) {
                vec v = load(x + i * h + j0) - sh;
                if (bias) v += load(bias + rows[i] * h + j0);
                s += v;
                q += v * v;
            }
            for (int k = 0; k < LANES; k++) { sums[j0 + k] += s[k]; squares[j0 + k] += q[k]; }
        }
        for (; j0 < h; j0++) {
            for (int64_t i = r0; i < r1; i++) {
                float v = value(x, bias, rows, h, i, j0) - shift[j0];
                sums[j0] += v;
                squares[j0] += (double)v * v;
            }
        }
    }
}

/* out = v * (alpha + (1 - alpha) p) and p = sigmoid((v - mean) * invstd), row by row. */
static void dice_apply(int64_t n, int64_t h, const float *restrict x,
                       const float *restrict bias, const int64_t *restrict rows,
                       const float *restrict alpha, const float *restrict scale,
                       const float *restrict mean, const float *restrict invstd,
                       float *restrict out, float *restrict p) {
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * h, *br = bias ? bias + rows[i] * h : NULL;
        float *o = out + i * h, *pr = p + i * h;
        if (br) {
            for (int64_t j = 0; j < h; j++) {
                float v = xr[j] + br[j], s = sigmoid((v - mean[j]) * invstd[j]);
                pr[j] = s;
                o[j] = v * (alpha[j] + scale[j] * s);
            }
        } else {
            for (int64_t j = 0; j < h; j++) {
                float v = xr[j], s = sigmoid((v - mean[j]) * invstd[j]);
                pr[j] = s;
                o[j] = v * (alpha[j] + scale[j] * s);
            }
        }
    }
}

int dinrec_dice_forward(int64_t n, int64_t h, const float *restrict x,
                        const float *restrict bias, const int64_t *restrict rows,
                        const float *restrict alpha, float eps, float *restrict out,
                        float *restrict p, float *restrict mean, float *restrict invstd) {
    /* Sums of (v - shift) and its square, shift = the first row: the variance is then
       computed from values centred near the data, not from E[v^2] - E[v]^2 of raw ones. */
    double *sums = calloc(2 * h, sizeof(double));
    float *shift = malloc(2 * h * sizeof(float));
    if (!sums || !shift) { free(sums); free(shift); return 1; }
    double *squares = sums + h;
    float *scale = shift + h; /* 1 - alpha */
    for (int64_t j = 0; j < h; j++) shift[j] = value(x, bias, rows, h, 0, j);
    moment_sums(n, h, x, bias, rows, shift, sums, squares);
    for (int64_t j = 0; j < h; j++) {
        double m = sums[j] / n, var = squares[j] / n - m * m;
        mean[j] = (float)(m + shift[j]);
        invstd[j] = (float)(1.0 / sqrt((var > 0 ? var : 0) + eps));
        scale[j] = 1.0f - alpha[j];
    }
    dice_apply(n, h, x, bias, rows, alpha, scale, mean, invstd, out, p);
    free(sums);
    free(shift);
    return 0;
}

/* 1 - alpha [h], freshly allocated (NULL when out of memory): the split passes' scale. */
static float *one_minus(const float *alpha, int64_t h) {
    float *scale = malloc(h * sizeof(float));
    if (scale)
        for (int64_t j = 0; j < h; j++) scale[j] = 1.0f - alpha[j];
    return scale;
}

/* The forward's two passes apart, for statistics combined across processes in between
   (synchronised Dice, dinrec.training.distributed.sync): shift [h] = row 0 of v, and the
   sums of (v - shift) and its square into sums / squares [h] (zeroed by the caller). */
int dinrec_dice_moments(int64_t n, int64_t h, const float *restrict x,
                        const float *restrict bias, const int64_t *restrict rows,
                        float *restrict shift, double *restrict sums,
                        double *restrict squares) {
    for (int64_t j = 0; j < h; j++) shift[j] = value(x, bias, rows, h, 0, j);
    moment_sums(n, h, x, bias, rows, shift, sums, squares);
    return 0;
}

int dinrec_dice_apply(int64_t n, int64_t h, const float *restrict x,
                      const float *restrict bias, const int64_t *restrict rows,
                      const float *restrict alpha, const float *restrict mean,
                      const float *restrict invstd, float *restrict out, float *restrict p) {
    float *scale = one_minus(alpha, h);
    if (!scale) return 1;
    dice_apply(n, h, x, bias, rows, alpha, scale, mean, invstd, out, p);
    free(scale);
    return 0;
}

/* Gradients given g = dL/df [n, h] and the forward's p, mean, invstd:
     gu = dL/du = g * v * (1 - alpha) * p * (1 - p)             (u = (v - mean) * invstd)
     dL/dalpha = sum_i g * v * (1 - p)
     dL/dv = g * (alpha + (1 - alpha) p)                          (at fixed p)
           + invstd * (gu - mean_i(gu) - u * mean_i(gu * u))      (batch-norm backward)
   with mean_i(gu * u) = invstd * mean_i(gu * (v - mean)). grad_bias (may be NULL) gets
   the sum of dL/dv over each bias row's rows; it must hold zeros on entry. */

/* The reduction pass: sum_i gu, sum_i gu * (v - mean), sum_i g v (1 - p) into acc [3h]
   (double, zeroed by the caller). */
static void grad_sums(int64_t n, int64_t h, const float *restrict g, const float *restrict x,
                      const float *restrict bias, const int64_t *restrict rows,
                      const float *restrict p, const float *restrict scale,
                      const float *restrict mean, double *restrict acc) {
    double *sum_gu = acc, *sum_guc = acc + h, *sum_ga = acc + 2 * h;
    for (int64_t r0 = 0; r0 < n; r0 += ROW_BLOCK) {
        int64_t r1 = r0 + ROW_BLOCK < n ? r0 + ROW_BLOCK : n;
        int64_t j0 = 0;
        for (; j0 + LANES <= h; j0 += LANES) {
            vec a1 = {0}, a2 = {0}, a3 = {0}, sc = load(scale + j0), mu = load(mean + j0);
            for (int64_t i = r0; i < r1; i++) {
                vec v = load(x + i * h + j0), s = load(p + i * h + j0);
                if (bias) v += load(bias + rows[i] * h + j0);
                vec gv = load(g + i * h + j0) * v, not_s = 1.0f - s;
                vec gu = gv * sc * s * not_s;
                a1 += gu;
                a2 += gu * (v - mu);
                a3 += gv * not_s;
            }
            for (int k = 0; k < LANES; k++) {
                sum_gu[j0 + k] += a1[k];
                sum_guc[j0 + k] += a2[k];
                sum_ga[j0 + k] += a3[k];
            }
        }
        for (; j0 < h; j0++) {
            for (int64_t i = r0; i < r1; i++) {
                float v = value(x, bias, rows, h, i, j0), s = p[i * h + j0];
                float gv = g[i * h + j0] * v, gu = gv * scale[j0] * s * (1.0f - s);
                sum_gu[j0] += gu;
                sum_guc[j0] += gu * (v - mean[j0]);
                sum_ga[j0] += gv * (1.0f - s);
            }
        }
    }
}

/* The gradient pass, given mean_gu [h] = mean_i(gu) and slope [h] = mean_i(gu (v - mean))
   * invstd^2 over the whole batch. */
static void grad_apply(int64_t n, int64_t h, const float *restrict g, const float *restrict x,
                       const float *restrict bias, const int64_t *restrict rows,
                       const float *restrict p, const float *restrict alpha,
                       const float *restrict scale, const float *restrict mean,
                       const float *restrict invstd, const float *restrict mean_gu,
                       const float *restrict slope, float *restrict grad_x,
                       float *restrict grad_bias) {
    for (int64_t i = 0; i < n; i++) {
        const float *gr = g + i * h, *xr = x + i * h, *pr = p + i * h;
        const float *br = bias ? bias + rows[i] * h : NULL;
        float *o = grad_x + i * h;
        for (int64_t j = 0; j < h; j++) {
            float v = xr[j] + (br ? br[j] : 0.0f), s = pr[j];
            float gu = gr[j] * v * scale[j] * s * (1.0f - s);
            o[j] = gr[j] * (alpha[j] + scale[j] * s)
                   + invstd[j] * (gu - mean_gu[j] - (v - mean[j]) * slope[j]);
        }
        if (grad_bias) {
            float *gb = grad_bias + rows[i] * h;
            for (int64_t j = 0; j < h; j++) gb[j] += o[j];
        }
    }
}

int dinrec_dice_backward(int64_t n, int64_t h, const float *restrict g,
                         const float *restrict x, const float *restrict bias,
                         const int64_t *restrict rows, const float *restrict p,
                         const float *restrict alpha, const float *restrict mean,
                         const float *restrict invstd, float *restrict grad_x,
                         float *restrict grad_alpha, float *restrict grad_bias) {
    double *acc = calloc(3 * h, sizeof(double));
    float *coef = malloc(3 * h * sizeof(float));
    if (!acc || !coef) { free(acc); free(coef); return 1; }
    double *sum_gu = acc, *sum_guc = acc + h, *sum_ga = acc + 2 * h;
    float *scale = coef, *mean_gu = coef + h, *slope = coef + 2 * h;
    for (int64_t j = 0; j < h; j++) scale[j] = 1.0f - alpha[j];
    grad_sums(n, h, g, x, bias, rows, p, scale, mean, acc);
    for (int64_t j = 0; j < h; j++) {
        mean_gu[j] = (float)(sum_gu[j] / n);
        slope[j] = (float)(sum_guc[j] / n) * invstd[j] * invstd[j];
        grad_alpha[j] = (float)sum_ga[j];
    }
    grad_apply(n, h, g, x, bias, rows, p, alpha, scale, mean, invstd, mean_gu, slope, grad_x,
               grad_bias);
    free(acc);
    free(coef);
    return 0;
}

/* The backward's two passes apart (synchronised Dice): acc [3h] as grad_sums (zeroed by
   the caller), then the gradient pass with the whole batch's mean_gu and slope. */
int dinrec_dice_grad_sums(int64_t n, int64_t h, const float *restrict g,
                          const float *restrict x, const float *restrict bias,
                          const int64_t *restrict rows, const float *restrict p,
                          const float *restrict alpha, const float *restrict mean,
                          double *restrict acc) {
    float *scale = one_minus(alpha, h);
    if (!scale) return 1;
    grad_sums(n, h, g, x, bias, rows, p, scale, mean, acc);
    free(scale);
    return 0;
}

int dinrec_dice_grad_apply(int64_t n, int64_t h, const float *restrict g,
                           const float *restrict x, const float *restrict bias,
                           const int64_t *restrict rows, const float *restrict p,
                           const float *restrict alpha, const float *restrict mean,
                           const float *restrict invstd, const float *restrict mean_gu,
                           const float *restrict slope, float *restrict grad_x,
                           float *restrict grad_bias) {
    float *scale = one_minus(alpha, h);
    if (!scale) return 1;
    grad_apply(n, h, g, x, bias, rows, p, alpha, scale, mean, invstd, mean_gu, slope, grad_x,
               grad_bias);
    free(scale);
    return 0;
}
