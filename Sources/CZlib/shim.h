// zlib: CRC-32 for ZIP records and raw DEFLATE for compressed .npz members.
#ifndef BISSL_CZLIB_SHIM_H
#define BISSL_CZLIB_SHIM_H
#include <zlib.h>
#endif
