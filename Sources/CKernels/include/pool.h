// A persistent pool of worker threads for the engine's parallel loops (Engine/Core/Parallel.swift), so
// that a loop split in two does not wait for a sleeping thread to be woken for each of the 70-150 loops of
// a small model's training step. Each worker waits for the next job spinning (with `pause`) for about
// `BISSL_POOL_SPIN` rounds, then sleeps on a condition variable until a job arrives.
#ifndef BISSL_POOL_H
#define BISSL_POOL_H

/// One piece of a job: `fn(ctx, k)` for piece k.
typedef void (*bissl_pool_fn)(void *ctx, long k);

/// Runs `fn(ctx, k)` for k in [0, pieces): piece 0 on the calling thread, piece k on worker k - 1, and
/// returns 1 after all of them have returned. Returns 0 without running anything when the pool cannot take
/// the job: `pieces` > `threads`, `threads` < 2, a call from inside a piece (nested loops) or while another
/// thread's job runs, in a child of `fork`; the caller then runs the pieces another way. The pool starts `threads - 1` workers
/// at the first call (later calls must pass the same `threads`).
int bissl_pool_run(long threads, long pieces, bissl_pool_fn fn, void *ctx);

#endif
