// libjpeg (libjpeg-turbo): decode a whole JPEG held in memory to 8-bit RGB. libjpeg's fatal
// errors longjmp back into this C function only (no longjmp ever crosses a Swift frame).
#ifndef BISSL_CJPEG_SHIM_H
#define BISSL_CJPEG_SHIM_H
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <setjmp.h>
#include <jpeglib.h>
#include <jerror.h>

/* libjpeg-turbo's own fuzz targets refuse progressive files past 500 scans: each scan re-walks the
   whole coefficient buffer, so a tiny file of empty scans costs time quadratic in its size. The
   walk also grows with the image: scans x pixels is at most BISSL_JPEG_MAX_SCAN_PIXELS (2^32: 64
   scans of an 8192 x 8192 image, 500 below 2^23 pixels; encoders write about 10). */
#define BISSL_JPEG_MAX_SCANS 500
#define BISSL_JPEG_MAX_SCAN_PIXELS (1ULL << 32)

typedef struct {
    struct jpeg_error_mgr base;
    jmp_buf jump;
    char *message;
    size_t message_size;
    int truncated;      /* set when libjpeg warned that the data ended early */
} bissl_jpeg_error;

static void bissl_jpeg_error_exit(j_common_ptr cinfo) {
    bissl_jpeg_error *err = (bissl_jpeg_error *)cinfo->err;
    char text[JMSG_LENGTH_MAX];
    (*cinfo->err->format_message)(cinfo, text);
    if (err->message && err->message_size > 0 && err->message[0] == 0) snprintf(err->message, err->message_size, "%s", text);
    longjmp(err->jump, 1);
}

static void bissl_jpeg_progress(j_common_ptr cinfo) {
    if (cinfo->is_decompressor) {
        j_decompress_ptr d = (j_decompress_ptr)cinfo;
        uint64_t scans = d->input_scan_number > 0 ? (uint64_t)d->input_scan_number : 0;
        if (scans > BISSL_JPEG_MAX_SCANS || scans * d->image_width * d->image_height > BISSL_JPEG_MAX_SCAN_PIXELS) {
            bissl_jpeg_error *err = (bissl_jpeg_error *)cinfo->err;
            if (err->message && err->message_size > 0 && err->message[0] == 0)
                snprintf(err->message, err->message_size, "progressive JPEG with more than %llu scans for %ux%u pixels",
                         (unsigned long long)(scans > BISSL_JPEG_MAX_SCANS ? BISSL_JPEG_MAX_SCANS
                                              : BISSL_JPEG_MAX_SCAN_PIXELS / ((uint64_t)d->image_width * d->image_height)),
                         d->image_width, d->image_height);
            longjmp(err->jump, 1);
        }
    }
}

static void bissl_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; /* warnings stay quiet */ }

static void bissl_jpeg_emit_message(j_common_ptr cinfo, int level) {
    bissl_jpeg_error *err = (bissl_jpeg_error *)cinfo->err;
    if (level < 0) {
        err->base.num_warnings++;
        if (err->base.msg_code == JWRN_JPEG_EOF) err->truncated = 1;
    }
}

/// Decodes `size` bytes of JPEG at `data` with libjpeg's defaults (JDCT_ISLOW, fancy upsampling,
/// as PIL uses). The frame size is checked right after the header is read, before libjpeg
/// allocates anything for the image: more than `max_pixels` pixels is refused (return 1), and
/// libjpeg's own working memory is capped at 8 bytes per allowed pixel (its coefficient buffers for
/// progressive files need 2 bytes per component and pixel); progressive files of more than
/// BISSL_JPEG_MAX_SCANS scans, or of more than BISSL_JPEG_MAX_SCAN_PIXELS scans x pixels, are refused. On success returns 0 and sets `*out` to a malloc'ed height*width*3 buffer (8-bit
/// RGB, row-major HWC; the caller frees it), `*width`, `*height`, `*source_channels` (1 gray,
/// 3 YCbCr/RGB). Grayscale is replicated to RGB by libjpeg. CMYK and YCCK (Adobe) JPEGs are
/// refused (return 2) with a message. A truncated file (libjpeg's JWRN_JPEG_EOF warning, after which
/// it pads the rest with grey) is an error: a cut file is reported, not half-decoded. Other
/// corrupt-data warnings (extraneous bytes before a marker) are tolerated, as PIL tolerates them.
/// On failure returns non-zero and writes a one-line reason into `message`.
static inline int bissl_jpeg_decode(const uint8_t *data, size_t size, uint8_t **out,
                                    uint32_t *width, uint32_t *height, int *source_channels,
                                    uint64_t max_pixels, char *message, size_t message_size) {
    *out = NULL;
    if (message_size > 0) message[0] = 0;
    if (size < 3 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) {
        snprintf(message, message_size, "not a JPEG file (bad signature)");
        return 1;
    }
    struct jpeg_decompress_struct cinfo;
    bissl_jpeg_error jerr;
    memset(&cinfo, 0, sizeof(cinfo));
    cinfo.err = jpeg_std_error(&jerr.base);
    jerr.base.error_exit = bissl_jpeg_error_exit;
    jerr.base.output_message = bissl_jpeg_output_message;
    jerr.base.emit_message = bissl_jpeg_emit_message;
    jerr.truncated = 0;
    jerr.message = message;
    jerr.message_size = message_size;
    uint8_t *volatile pixels = NULL;
    if (setjmp(jerr.jump)) {
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        if (message_size > 0 && message[0] == 0) snprintf(message, message_size, "libjpeg error");
        return 1;
    }
    struct jpeg_progress_mgr progress;
    memset(&progress, 0, sizeof(progress));
    progress.progress_monitor = bissl_jpeg_progress;
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    cinfo.mem->max_memory_to_use = (long)(max_pixels * 8 > (uint64_t)LONG_MAX ? LONG_MAX : max_pixels * 8);
    jpeg_mem_src(&cinfo, (const unsigned char *)data, (unsigned long)size);
    jpeg_read_header(&cinfo, TRUE);
    if ((uint64_t)cinfo.image_width * (uint64_t)cinfo.image_height > max_pixels) {
        snprintf(message, message_size, "image of %ux%u pixels is larger than %llu pixels",
                 cinfo.image_width, cinfo.image_height, (unsigned long long)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(message, message_size, "CMYK JPEG is not supported (convert it to RGB first)");
        jpeg_destroy_decompress(&cinfo);
        return 2;
    }
    *source_channels = cinfo.num_components;
    cinfo.out_color_space = JCS_RGB;
    jpeg_start_decompress(&cinfo);
    uint32_t w = cinfo.output_width, h = cinfo.output_height;
    if ((uint64_t)w * (uint64_t)h > max_pixels || cinfo.output_components != 3) {
        snprintf(message, message_size, "image of %ux%u pixels with %d components is not supported", w, h, cinfo.output_components);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    size_t stride = (size_t)w * 3;
    pixels = (uint8_t *)malloc((size_t)h * stride + 1);
    if (!pixels) { snprintf(message, message_size, "out of memory for %ux%u image", w, h); jpeg_destroy_decompress(&cinfo); return 1; }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    if (jerr.truncated) {
        /* "Premature end of JPEG file": libjpeg padded the rest with grey; report it as damage. */
        snprintf(message, message_size, "premature end of JPEG file (truncated)");
        free(pixels);
        jpeg_destroy_decompress(&cinfo);
        return 1;
    }
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    *out = pixels;
    *width = w;
    *height = h;
    return 0;
}
#endif
