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

// The job word packs the job number (bits 32-63), its piece count (bits 16-31) and the next unclaimed piece
// (bits 0-15). A thread takes piece k by moving the word from k to k + 1 with a compare-and-swap that also
// checks the job number, so a worker that wakes late, after its job has ended, takes nothing from it; a job
// ends only when all its pieces have run (`done`), so the job's `fn` and `ctx` stay valid for every piece taken.
#define JOB(word) ((unsigned long)(word) >> 32)
#define PIECES(word) (((unsigned long)(word) >> 16) & 0xffff)
#define NEXT(word) ((unsigned long)(word) & 0xffff)

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_ulong word;        // job number, pieces, next piece (above)
    atomic_long done;         // pieces of the current job that have returned
    atomic_int busy;          // a job is being run (one caller at a time)
    int sleepers;             // workers waiting on `wake` (under `lock`)
    long workers;
    bissl_pool_fn fn;
    void *ctx;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};

static pthread_once_t started = PTHREAD_ONCE_INIT;
static long requested;
static _Thread_local int inside;   // this thread is a worker, or runs pieces of a job as its caller

/// Takes and runs pieces of job `job` until none is left unclaimed (or another job has begun).
static void run_pieces(unsigned long job) {
    unsigned long w = atomic_load_explicit(&pool.word, memory_order_acquire);
    while (JOB(w) == job && NEXT(w) < PIECES(w)) {
        if (atomic_compare_exchange_weak_explicit(&pool.word, &w, w + 1, memory_order_acquire, memory_order_acquire)) {
            pool.fn(pool.ctx, (long)NEXT(w));
            atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
            w = atomic_load_explicit(&pool.word, memory_order_acquire);
        }
    }
}

static void *worker(void *arg) {
    (void)arg;
    inside = 1;
    unsigned long seen = 0;
    for (;;) {
        unsigned long g;
        int spins = 0;
        while ((g = JOB(atomic_load_explicit(&pool.word, memory_order_acquire))) == seen && spins < BISSL_POOL_SPIN) {
            relax();
            spins++;
        }
        if (g == seen) {
            pthread_mutex_lock(&pool.lock);
            pool.sleepers++;
            while ((g = JOB(atomic_load_explicit(&pool.word, memory_order_acquire))) == seen)
                pthread_cond_wait(&pool.wake, &pool.lock);
            pool.sleepers--;
            pthread_mutex_unlock(&pool.lock);
        }
        seen = g;
        run_pieces(g);
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
        if (n != i + 1) break;
    }
    pool.workers = n;
}

int bissl_pool_run(long threads, long pieces, bissl_pool_fn fn, void *ctx) {
    if (threads < 2 || pieces < 1 || pieces > BISSL_POOL_MAX_PIECES || inside || forked) return 0;
    requested = threads;
    pthread_once(&started, start);
    if (pool.workers < 1) return 0;
    int expected = 0;
    if (!atomic_compare_exchange_strong(&pool.busy, &expected, 1)) return 0;
    pool.fn = fn;
    pool.ctx = ctx;
    atomic_store_explicit(&pool.done, 0, memory_order_relaxed);
    // Publish the job with piece 0 already taken by this thread.
    unsigned long job = (JOB(atomic_load_explicit(&pool.word, memory_order_relaxed)) + 1) & 0xffffffffUL;
    if (job == 0) job = 1;   // 0 is the number the workers start having seen
    atomic_store_explicit(&pool.word, (job << 32) | ((unsigned long)pieces << 16) | 1, memory_order_release);
    pthread_mutex_lock(&pool.lock);
    if (pool.sleepers) pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    inside = 1;
    fn(ctx, 0);
    atomic_fetch_add_explicit(&pool.done, 1, memory_order_release);
    // Then every piece no worker has taken yet (all of them when the workers are descheduled or asleep).
    run_pieces(job);
    inside = 0;
    // The pieces the workers took: spin while they run, yielding now and then in case a worker waits for a core.
    for (long spins = 1; atomic_load_explicit(&pool.done, memory_order_acquire) != pieces; spins++) {
        relax();
        if (spins % BISSL_POOL_SPIN == 0) sched_yield();
    }
    atomic_store_explicit(&pool.busy, 0, memory_order_release);
    return 1;
}
