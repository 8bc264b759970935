// The engine's worker pool (contract in include/pool.h).
#define _GNU_SOURCE
#include "pool.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/// Rounds a worker spins for the next job before it sleeps (each round one `pause`, about 40-140 cycles:
/// some 0.1-0.3 ms, longer than the gap between two loops of a training step, far shorter than a time slice).
#define BISSL_POOL_SPIN 4096

#if defined(__x86_64__)
#define relax() __builtin_ia32_pause()
#else
#define relax() ((void)0)
#endif

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_long generation;   // the job number; a worker runs a job when it sees it change
    atomic_long remaining;    // workers that have not finished the current job
    atomic_int busy;          // a job is being run (one caller at a time)
    int sleepers;             // workers waiting on `wake` (under `lock`)
    long workers;
    bissl_pool_fn fn;
    void *ctx;
    long pieces;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static pthread_once_t started = PTHREAD_ONCE_INIT;
static long requested;
static _Thread_local int inside;   // this thread is a worker, or runs piece 0 of a job

static void *worker(void *arg) {
    long index = (long)arg;   // runs piece index + 1
    inside = 1;
    long seen = 0;
    for (;;) {
        long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen && spins < BISSL_POOL_SPIN) {
            relax();
            spins++;
        }
        if (g == seen) {
            pthread_mutex_lock(&pool.lock);
            pool.sleepers++;
            while ((g = atomic_load_explicit(&pool.generation, memory_order_acquire)) == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.lock);
        }
        seen = g;
        if (index + 1 < pool.pieces) pool.fn(pool.ctx, index + 1);
        atomic_fetch_sub_explicit(&pool.remaining, 1, memory_order_release);
    }
    return 0;
}

/// In a child of `fork` the workers do not exist: its calls are refused (the caller runs the pieces itself).
static volatile int forked;
static void in_child(void) { forked = 1; }

static void start(void) {
    pthread_atfork(0, 0, in_child);
    long n = 0;
    for (long i = 0; i + 1 < requested; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, worker, (void *)i) == 0) n++;
        pthread_attr_destroy(&attr);
        if (n != i + 1) break;   // workers are numbered 0..n-1 without gaps
    }
    pool.workers = n;
}

int bissl_pool_run(long threads, long pieces, bissl_pool_fn fn, void *ctx) {
    if (threads < 2 || pieces > threads || pieces < 1 || inside || forked) return 0;
    requested = threads;
    pthread_once(&started, start);
    if (pieces > pool.workers + 1) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pool.busy, &expected, 1)) return 0;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.pieces = pieces;
    atomic_store_explicit(&pool.remaining, pool.workers, memory_order_relaxed);
    atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
    pthread_mutex_lock(&pool.lock);
    if (pool.sleepers) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    inside = 1;
    fn(ctx, 0);
    inside = 0;
    // The workers' pieces: spin while they run, yielding now and then in case a worker waits for a core.
    for (long spins = 1; atomic_load_explicit(&pool.remaining, memory_order_acquire) != 0; spins++) {
        relax();
        if (spins % BISSL_POOL_SPIN == 0) sched_yield();
    }
    atomic_store_explicit(&pool.busy, 0, memory_order_release);
    return 1;
}
