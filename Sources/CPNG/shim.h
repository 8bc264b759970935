// libpng: decode a whole PNG held in memory to 8-bit RGB, with libpng's setjmp/longjmp error
// handling kept entirely inside this C function (no longjmp ever crosses a Swift frame).
#ifndef BISSL_CPNG_SHIM_H
#define BISSL_CPNG_SHIM_H
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/// Largest side accepted when decoding (libpng's user limit) and encoding.
#define BISSL_PNG_MAX_SIDE 65535u

typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
    char *message;      /* caller's buffer for the first error message */
    size_t message_size;
} bissl_png_source;

static void bissl_png_read_fn(png_structp png, png_bytep out, png_size_t length) {
    bissl_png_source *src = (bissl_png_source *)png_get_io_ptr(png);
    if (src->size - src->offset < length) {
        png_error(png, "file ends early (truncated PNG)");
    }
    memcpy(out, src->data + src->offset, length);
    src->offset += length;
}

static void bissl_png_error_fn(png_structp png, png_const_charp msg) {
    bissl_png_source *src = (bissl_png_source *)png_get_error_ptr(png);
    if (src->message && src->message_size > 0 && src->message[0] == 0) {
        snprintf(src->message, src->message_size, "%s", msg);
    }
    png_longjmp(png, 1);
}

static void bissl_png_warning_fn(png_structp png, png_const_charp msg) {
    (void)png; (void)msg; /* ancillary-chunk warnings are not errors; stay quiet */
}

/// Decodes `size` bytes of PNG at `data`. The header (IHDR) is read first: more than `max_pixels`
/// pixels is refused before the image buffer is allocated. On success returns 0 and sets `*out` to a malloc'ed
/// buffer of height*width*3 bytes (8-bit RGB, row-major HWC; the caller frees it), `*width`,
/// `*height` and `*source_channels` (channels in the file: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA;
/// palette images report 3, or 4 with a tRNS chunk). Conversions: palette expanded to RGB,
/// gray (1/2/4/8/16-bit) expanded and replicated to RGB, alpha dropped (not composited, like
/// PIL's `convert("RGB")`), 16-bit samples reduced to their high byte (`png_set_strip_16`).
/// On failure returns non-zero and writes a one-line reason into `message`.
static inline int bissl_png_decode(const uint8_t *data, size_t size, uint8_t **out,
                                   uint32_t *width, uint32_t *height, int *source_channels,
                                   uint64_t max_pixels, char *message, size_t message_size) {
    *out = NULL;
    if (message_size > 0) message[0] = 0;
    if (size < 8 || png_sig_cmp((png_const_bytep)data, 0, 8) != 0) {
        snprintf(message, message_size, "not a PNG file (bad signature)");
        return 1;
    }
    bissl_png_source src = { data, size, 0, message, message_size };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, bissl_png_error_fn, bissl_png_warning_fn);
    if (!png) { snprintf(message, message_size, "libpng could not start"); return 1; }
    png_infop info = png_create_info_struct(png);
    if (!info) { png_destroy_read_struct(&png, NULL, NULL); snprintf(message, message_size, "libpng could not start"); return 1; }
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        if (message_size > 0 && message[0] == 0) snprintf(message, message_size, "libpng error");
        return 1;
    }
    png_set_read_fn(png, &src, bissl_png_read_fn);
    png_set_user_limits(png, BISSL_PNG_MAX_SIDE, BISSL_PNG_MAX_SIDE);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info);
    uint32_t h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    int has_trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if ((uint64_t)w * (uint64_t)h > max_pixels) {
        snprintf(message, message_size, "image of %ux%u pixels is larger than %llu pixels", w, h, (unsigned long long)max_pixels);
        png_error(png, message);
    }
    switch (color) {
    case PNG_COLOR_TYPE_GRAY: *source_channels = 1; break;
    case PNG_COLOR_TYPE_GRAY_ALPHA: *source_channels = 2; break;
    case PNG_COLOR_TYPE_RGB: *source_channels = 3; break;
    case PNG_COLOR_TYPE_RGB_ALPHA: *source_channels = 4; break;
    case PNG_COLOR_TYPE_PALETTE: *source_channels = has_trns ? 4 : 3; break;
    default: *source_channels = 0; break;
    }
    if (depth == 16) png_set_strip_16(png);
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    if ((color & PNG_COLOR_MASK_ALPHA) || has_trns) png_set_strip_alpha(png);
    /* tRNS (palette or single-colour transparency) would become alpha on expansion: dropped too. */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8 || rowbytes != (size_t)w * 3) {
        snprintf(message, message_size, "unexpected PNG layout after conversion (color type %d, depth %d)", color, depth);
        png_error(png, message);
    }
    pixels = (uint8_t *)malloc((size_t)h * rowbytes + 1);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * ((size_t)h + 1));
    if (!pixels || !rows) { snprintf(message, message_size, "out of memory for %ux%u image", w, h); png_error(png, message); }
    for (uint32_t y = 0; y < h; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    *out = pixels;
    *width = w;
    *height = h;
    return 0;
}

/* ---- encoding (Training/Runs/CurvePlot.swift) ---- */

typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
    int failed;
} bissl_png_sink;

static void bissl_png_write_fn(png_structp png, png_bytep in, png_size_t length) {
    bissl_png_sink *sink = (bissl_png_sink *)png_get_io_ptr(png);
    if (sink->failed) return;
    if (sink->size + length > sink->capacity) {
        size_t capacity = sink->capacity ? sink->capacity : 65536;
        while (capacity < sink->size + length) capacity *= 2;
        uint8_t *grown = (uint8_t *)realloc(sink->data, capacity);
        if (!grown) { sink->failed = 1; png_error(png, "out of memory while encoding PNG"); }
        sink->data = grown;
        sink->capacity = capacity;
    }
    memcpy(sink->data + sink->size, in, length);
    sink->size += length;
}

static void bissl_png_flush_fn(png_structp png) { (void)png; }

static void bissl_png_encode_error_fn(png_structp png, png_const_charp msg) {
    char *message = (char *)png_get_error_ptr(png);
    if (message && message[0] == 0) snprintf(message, 256, "%s", msg);
    png_longjmp(png, 1);
}

/// Encodes `height` rows of `width` 8-bit RGB pixels (row-major HWC) as a PNG (zlib level 6, no
/// interlace) into a malloc'ed buffer: returns 0 and sets `*out` (the caller frees it) and `*out_size`;
/// on failure returns non-zero with a one-line reason in `message` (at least 256 bytes).
static inline int bissl_png_encode_rgb(const uint8_t *pixels, uint32_t width, uint32_t height,
                                       uint8_t **out, size_t *out_size, char *message) {
    *out = NULL;
    *out_size = 0;
    message[0] = 0;
    if (width == 0 || height == 0 || width > BISSL_PNG_MAX_SIDE || height > BISSL_PNG_MAX_SIDE) {
        snprintf(message, 256, "cannot encode a %ux%u image", width, height);
        return 1;
    }
    bissl_png_sink sink = { NULL, 0, 0, 0 };
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, message, bissl_png_encode_error_fn, bissl_png_warning_fn);
    if (!png) { snprintf(message, 256, "libpng could not start"); return 1; }
    png_infop info = png_create_info_struct(png);
    if (!info) { png_destroy_write_struct(&png, NULL); snprintf(message, 256, "libpng could not start"); return 1; }
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows);
        free(sink.data);
        png_destroy_write_struct(&png, &info);
        if (message[0] == 0) snprintf(message, 256, "libpng error");
        return 1;
    }
    png_set_write_fn(png, &sink, bissl_png_write_fn, bissl_png_flush_fn);
    png_set_IHDR(png, info, width, height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 6);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * height);
    if (!rows) { snprintf(message, 256, "out of memory"); png_error(png, message); }
    for (uint32_t y = 0; y < height; y++) rows[y] = (png_bytep)(pixels + (size_t)y * width * 3);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    *out = sink.data;
    *out_size = sink.size;
    return 0;
}
#endif
