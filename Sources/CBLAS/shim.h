// The C side of the engine's BLAS use. The engine does not link libopenblas: it opens it at first use
// (Engine/Core/BLAS.swift) after choosing its kernel, and calls the few functions below through
// pointers of these types (the CBLAS interface of https://www.netlib.org/blas/#_cblas, 32-bit integers:
// OpenBLAS's default LP64 build, Debian's libopenblas0). Plus glibc's malloc.h for `mallopt`
// (Engine/Core/Runtime.swift), dlfcn.h, and x86 CPUID/XGETBV readers for Engine/Core/CPUFeatures.swift.
#ifndef BISSL_CBLAS_SHIM_H
#define BISSL_CBLAS_SHIM_H
#include <dlfcn.h>

/// CBLAS enum values (cblas.h): CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112.
typedef void (*bissl_sgemm_fn)(int order, int transA, int transB, int m, int n, int k, float alpha,
                               const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);
typedef void (*bissl_dgemm_fn)(int order, int transA, int transB, int m, int n, int k, double alpha,
                               const double *a, int lda, const double *b, int ldb, double beta, double *c, int ldc);
/// openblas_set_num_threads, openblas_get_corename, openblas_get_config (OpenBLAS's cblas.h).
typedef void (*bissl_set_threads_fn)(int threads);
typedef char *(*bissl_string_fn)(void);

#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

/// CPUID leaf `leaf`, sub-leaf `subleaf` into regs[0..3] = EAX, EBX, ECX, EDX. Returns 0 when the leaf
/// is above the CPU's maximum (regs zeroed) or the machine is not x86 (Intel SDM vol. 2A, "CPUID").
static inline int bissl_cpuid(unsigned leaf, unsigned subleaf, unsigned regs[4]) {
    regs[0] = regs[1] = regs[2] = regs[3] = 0;
#if defined(__x86_64__) || defined(__i386__)
    return __get_cpuid_count(leaf, subleaf, &regs[0], &regs[1], &regs[2], &regs[3]);
#else
    (void)leaf; (void)subleaf;
    return 0;
#endif
}

/// XCR0 (XGETBV with ECX = 0): which register states the OS saves. Call only when CPUID.1:ECX.OSXSAVE
/// (bit 27) is set; returns 0 on non-x86 machines (Intel SDM vol. 2C, "XGETBV").
static inline unsigned long long bissl_xgetbv0(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((unsigned long long)edx << 32) | eax;
#else
    return 0;
#endif
}
#endif
