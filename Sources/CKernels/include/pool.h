// A persistent pool of worker threads for the engine's parallel loops (Engine/Core/Parallel.swift), so
// that a loop split in pieces does not wait for a sleeping thread to be woken for each of the 70-150 loops of
// a small model's training step. Each worker waits for the next job spinning (with `pause`) for about
// `BISSL_POOL_SPIN` rounds, then sleeps on a condition variable until a job arrives. The pieces of a job are
// taken, not assigned: the caller runs piece 0, then, like each worker, takes the next piece nobody has taken
// until none is left, so a worker that is descheduled or asleep delays nothing (the caller runs its pieces).
#ifndef BISSL_POOL_H
#define BISSL_POOL_H

/// The most pieces one job may have.
#define BISSL_POOL_MAX_PIECES 65535

/// One piece of a job: `fn(ctx, k)` for piece k.
typedef void (*bissl_pool_fn)(void *ctx, long k);

/// Runs `fn(ctx, k)` once for each k in [0, pieces) and returns 1 after all of them have returned: piece 0 on
/// the calling thread, every other piece on whichever thread takes it first (the caller or one of the
/// `threads - 1` workers; which one is not fixed, so a piece must not depend on the thread it runs on).
/// Returns 0 without running anything when the pool cannot take the job: `threads` < 2, `pieces` < 1 or
/// more than `BISSL_POOL_MAX_PIECES`, a call from inside a piece (nested loops) or while another thread's job
/// runs, no worker could be started, in a child of `fork`; the caller then runs the pieces another way. The
/// pool starts `threads - 1` workers at the first call (later calls must pass the same `threads`).
int bissl_pool_run(long threads, long pieces, bissl_pool_fn fn, void *ctx);

#endif
