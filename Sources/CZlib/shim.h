// zlib: CRC-32 for ZIP records and raw DEFLATE for compressed .npz members.
#ifndef BISSL_CZLIB_SHIM_H
#define BISSL_CZLIB_SHIM_H
#include <zlib.h>

/// The largest expansion DEFLATE can achieve (RFC 1951: a 258-byte match costs at least 2 bits, so
/// 1 byte of stream decodes to at most 1032 bytes): n valid bytes never inflate past 1032 * n. Readers
/// refuse a declared size beyond that before allocating it.
static const unsigned long bissl_deflate_max_expansion = 1032;
#endif
