/* takeover serial protocol v2: portable C99 codec. See takeover_proto.h. */
#include "takeover_proto.h"

#include <string.h>

/* ---- little-endian helpers (no unaligned access, no host-endianness assumption) --------- */

static void put_u8(uint8_t **p, uint8_t v) { *(*p)++ = v; }
static void put_u16(uint8_t **p, uint16_t v)
{
    (*p)[0] = (uint8_t)(v & 0xFFu);
    (*p)[1] = (uint8_t)(v >> 8);
    *p += 2;
}
static void put_u32(uint8_t **p, uint32_t v)
{
    (*p)[0] = (uint8_t)(v & 0xFFu);
    (*p)[1] = (uint8_t)((v >> 8) & 0xFFu);
    (*p)[2] = (uint8_t)((v >> 16) & 0xFFu);
    (*p)[3] = (uint8_t)(v >> 24);
    *p += 4;
}
static void put_i16(uint8_t **p, int16_t v) { put_u16(p, (uint16_t)v); }
static void put_i32(uint8_t **p, int32_t v) { put_u32(p, (uint32_t)v); }

static uint8_t get_u8(const uint8_t **p) { return *(*p)++; }
static uint16_t get_u16(const uint8_t **p)
{
    uint16_t v = (uint16_t)((*p)[0] | ((uint16_t)(*p)[1] << 8));
    *p += 2;
    return v;
}
static uint32_t get_u32(const uint8_t **p)
{
    uint32_t v = (uint32_t)(*p)[0] | ((uint32_t)(*p)[1] << 8) | ((uint32_t)(*p)[2] << 16) |
                 ((uint32_t)(*p)[3] << 24);
    *p += 4;
    return v;
}
/* Two's complement conversion without implementation-defined casts of out-of-range values. */
static int16_t get_i16(const uint8_t **p)
{
    uint16_t u = get_u16(p);
    return u <= 0x7FFFu ? (int16_t)u : (int16_t)(-(int32_t)(0xFFFFu - u) - 1);
}
static int32_t get_i32(const uint8_t **p)
{
    uint32_t u = get_u32(p);
    return u <= 0x7FFFFFFFul ? (int32_t)u : (int32_t)(-(int32_t)(0xFFFFFFFFul - u) - 1);
}

/* ---- CRC-16/IBM-3740 -------------------------------------------------------------------- */

uint16_t tp_crc16(uint16_t crc, const uint8_t *data, size_t len)
{
    /* Bitwise, MSB first: small and table-free; 8 shifts per byte is cheap at serial rates. */
    uint32_t c = crc;
    size_t i;
    int bit;
    for (i = 0; i < len; ++i) {
        c ^= (uint32_t)data[i] << 8;
        for (bit = 0; bit < 8; ++bit) {
            c = (c & 0x8000u) ? ((c << 1) ^ 0x1021u) : (c << 1);
        }
        c &= 0xFFFFu;
    }
    return (uint16_t)c;
}

/* ---- COBS -------------------------------------------------------------------------------- */

/* Streaming encoder: lets tp_frame_encode COBS-encode header, payload and CRC without a
 * scratch copy of the frame. */
typedef struct {
    uint8_t *out;
    size_t cap;
    size_t pos;      /* next free byte */
    size_t code_pos; /* where the current block's code byte goes */
    uint8_t code;
    bool failed;
} cobs_writer_t;

static void cobs_begin(cobs_writer_t *w, uint8_t *out, size_t cap)
{
    w->out = out;
    w->cap = cap;
    w->code_pos = 0;
    w->pos = 1;
    w->code = 1;
    w->failed = cap < 1;
}

static void cobs_put(cobs_writer_t *w, uint8_t byte, bool more_follows)
{
    if (w->failed) {
        return;
    }
    if (byte != 0) {
        if (w->pos >= w->cap) {
            w->failed = true;
            return;
        }
        w->out[w->pos++] = byte;
        ++w->code;
    }
    if (byte == 0 || w->code == 0xFF) {
        w->out[w->code_pos] = w->code;
        w->code = 1;
        w->code_pos = w->pos;
        /* A full block at the very end needs no further code byte (canonical COBS). */
        if (byte == 0 || more_follows) {
            if (w->pos >= w->cap) {
                w->failed = true;
                return;
            }
            ++w->pos;
        }
    }
}

static size_t cobs_end(cobs_writer_t *w)
{
    if (w->failed) {
        return 0;
    }
    if (w->code_pos < w->pos) {
        w->out[w->code_pos] = w->code;
    }
    return w->pos;
}

size_t tp_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap)
{
    cobs_writer_t w;
    size_t i;
    cobs_begin(&w, out, out_cap);
    for (i = 0; i < len; ++i) {
        cobs_put(&w, in[i], i + 1 < len);
    }
    return cobs_end(&w);
}

bool tp_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t *out_len)
{
    size_t i = 0, o = 0, j;
    while (i < len) {
        uint8_t code = in[i];
        size_t end;
        if (code == 0) {
            return false;
        }
        end = i + code;
        if (end > len) {
            return false;
        }
        for (j = i + 1; j < end; ++j) {
            if (in[j] == 0) {
                return false;
            }
            out[o++] = in[j]; /* o <= j always holds, so decoding in place is safe */
        }
        i = end;
        if (code != 0xFF && i < len) {
            out[o++] = 0;
        }
    }
    *out_len = o;
    return true;
}

/* ---- frames ------------------------------------------------------------------------------ */

size_t tp_frame_encode(uint8_t msg_id, uint16_t seq, const uint8_t *payload, size_t payload_len,
                       uint8_t *out, size_t out_cap)
{
    uint8_t header[TP_HEADER_SIZE];
    uint8_t crc_bytes[TP_CRC_SIZE];
    uint16_t crc;
    cobs_writer_t w;
    size_t i, n;

    if (payload_len > TP_MAX_PAYLOAD || (payload_len > 0 && payload == NULL)) {
        return 0;
    }
    header[0] = msg_id;
    header[1] = (uint8_t)(seq & 0xFFu);
    header[2] = (uint8_t)(seq >> 8);
    crc = tp_crc16(0xFFFFu, header, sizeof header);
    crc = tp_crc16(crc, payload, payload_len);
    crc_bytes[0] = (uint8_t)(crc & 0xFFu);
    crc_bytes[1] = (uint8_t)(crc >> 8);

    cobs_begin(&w, out, out_cap);
    for (i = 0; i < sizeof header; ++i) {
        cobs_put(&w, header[i], true);
    }
    for (i = 0; i < payload_len; ++i) {
        cobs_put(&w, payload[i], true);
    }
    cobs_put(&w, crc_bytes[0], true);
    cobs_put(&w, crc_bytes[1], false);
    n = cobs_end(&w);
    if (n == 0 || n >= out_cap) {
        return 0;
    }
    out[n] = 0x00;
    return n + 1;
}

void tp_decoder_init(tp_decoder_t *dec) { memset(dec, 0, sizeof *dec); }

int tp_decoder_feed(tp_decoder_t *dec, uint8_t byte, tp_frame_t *frame)
{
    size_t body_len = 0;
    uint16_t crc_rx;

    if (byte != 0) {
        if (dec->overflow) {
            return TP_NOTHING;
        }
        if (dec->len >= TP_MAX_ENCODED) {
            dec->len = 0;
            dec->overflow = true;
            ++dec->oversized;
            return TP_REJECT_OVERSIZED;
        }
        dec->buf[dec->len++] = byte;
        return TP_NOTHING;
    }
    /* delimiter */
    if (dec->overflow) {
        dec->overflow = false;
        return TP_NOTHING;
    }
    if (dec->len == 0) {
        return TP_NOTHING; /* idle delimiter */
    }
    if (!tp_cobs_decode(dec->buf, dec->len, dec->buf, &body_len)) {
        dec->len = 0;
        ++dec->cobs_errors;
        return TP_REJECT_COBS;
    }
    dec->len = 0;
    if (body_len < TP_MIN_FRAME) {
        ++dec->short_frames;
        return TP_REJECT_SHORT;
    }
    if (body_len > TP_MAX_FRAME) {
        ++dec->oversized;
        return TP_REJECT_OVERSIZED;
    }
    crc_rx = (uint16_t)(dec->buf[body_len - 2] | ((uint16_t)dec->buf[body_len - 1] << 8));
    if (tp_crc16(0xFFFFu, dec->buf, body_len - TP_CRC_SIZE) != crc_rx) {
        ++dec->crc_errors;
        return TP_REJECT_CRC;
    }
    ++dec->frames_ok;
    frame->msg_id = dec->buf[0];
    frame->seq = (uint16_t)(dec->buf[1] | ((uint16_t)dec->buf[2] << 8));
    frame->payload = dec->buf + TP_HEADER_SIZE;
    frame->payload_len = body_len - TP_HEADER_SIZE - TP_CRC_SIZE;
    return TP_FRAME_READY;
}

/* ---- messages ---------------------------------------------------------------------------- */

size_t tp_pack_hello(const tp_hello_t *m, uint8_t *out)
{
    uint8_t *p = out;
    put_u16(&p, m->version);
    put_u16(&p, m->flags);
    put_u32(&p, m->nonce);
    return (size_t)(p - out);
}

bool tp_unpack_hello(const uint8_t *p, size_t len, tp_hello_t *m)
{
    if (len != 8) {
        return false;
    }
    m->version = get_u16(&p);
    m->flags = get_u16(&p);
    m->nonce = get_u32(&p);
    return true;
}

size_t tp_pack_cmd_vel(const tp_cmd_vel_t *m, uint8_t *out)
{
    uint8_t *p = out;
    put_i16(&p, m->v_mmps);
    put_i16(&p, m->w_mradps);
    return (size_t)(p - out);
}

bool tp_unpack_cmd_vel(const uint8_t *p, size_t len, tp_cmd_vel_t *m)
{
    if (len != 4) {
        return false;
    }
    m->v_mmps = get_i16(&p);
    m->w_mradps = get_i16(&p);
    return true;
}

size_t tp_pack_heartbeat(const tp_heartbeat_t *m, uint8_t *out)
{
    uint8_t *p = out;
    put_u32(&p, m->host_us);
    return (size_t)(p - out);
}

bool tp_unpack_heartbeat(const uint8_t *p, size_t len, tp_heartbeat_t *m)
{
    if (len != 4) {
        return false;
    }
    m->host_us = get_u32(&p);
    return true;
}

size_t tp_pack_set_estop(const tp_set_estop_t *m, uint8_t *out)
{
    uint8_t *p = out;
    put_u8(&p, m->engage);
    return (size_t)(p - out);
}

bool tp_unpack_set_estop(const uint8_t *p, size_t len, tp_set_estop_t *m)
{
    if (len != 1) {
        return false;
    }
    m->engage = get_u8(&p);
    return true;
}

size_t tp_pack_sim_reset(const tp_sim_reset_t *m, uint8_t *out)
{
    uint8_t *p = out;
    put_u32(&p, m->seed);
    return (size_t)(p - out);
}

bool tp_unpack_sim_reset(const uint8_t *p, size_t len, tp_sim_reset_t *m)
{
    if (len != 4) {
        return false;
    }
    m->seed = get_u32(&p);
    return true;
}

size_t tp_pack_hello_ack(const tp_hello_ack_t *m, uint8_t *out)
{
    uint8_t *p = out;
    put_u16(&p, m->version);
    put_u32(&p, m->nonce);
    put_u16(&p, m->capabilities);
    put_u16(&p, m->watchdog_ms);
    put_u8(&p, m->state_rate_hz);
    put_u8(&p, m->scan_rate_hz);
    memcpy(p, m->name, TP_NAME_SIZE);
    p += TP_NAME_SIZE;
    return (size_t)(p - out);
}

bool tp_unpack_hello_ack(const uint8_t *p, size_t len, tp_hello_ack_t *m)
{
    if (len != 12u + TP_NAME_SIZE) {
        return false;
    }
    m->version = get_u16(&p);
    m->nonce = get_u32(&p);
    m->capabilities = get_u16(&p);
    m->watchdog_ms = get_u16(&p);
    m->state_rate_hz = get_u8(&p);
    m->scan_rate_hz = get_u8(&p);
    memcpy(m->name, p, TP_NAME_SIZE);
    return true;
}

size_t tp_pack_state_v1(const tp_state_t *m, uint8_t *out)
{
    uint8_t *p = out;
    put_u32(&p, m->t_ms);
    put_i32(&p, m->x_mm);
    put_i32(&p, m->y_mm);
    put_i32(&p, m->yaw_urad);
    put_i16(&p, m->v_mmps);
    put_i16(&p, m->w_mradps);
    put_u16(&p, m->battery_permille);
    put_u16(&p, m->flags);
    put_u16(&p, m->last_cmd_seq);
    return (size_t)(p - out);
}

size_t tp_pack_state(const tp_state_t *m, uint8_t *out)
{
    uint8_t *p = out + tp_pack_state_v1(m, out);
    put_i32(&p, m->current_ma);
    put_u8(&p, m->power_supply_status);
    return (size_t)(p - out);
}

bool tp_unpack_state(const uint8_t *p, size_t len, tp_state_t *m)
{
    if (len != TP_STATE_SIZE && len != TP_STATE_V1_SIZE) {
        return false;
    }
    m->t_ms = get_u32(&p);
    m->x_mm = get_i32(&p);
    m->y_mm = get_i32(&p);
    m->yaw_urad = get_i32(&p);
    m->v_mmps = get_i16(&p);
    m->w_mradps = get_i16(&p);
    m->battery_permille = get_u16(&p);
    m->flags = get_u16(&p);
    m->last_cmd_seq = get_u16(&p);
    if (len == TP_STATE_V1_SIZE) { /* a version-1 base: it does not say */
        m->current_ma = TP_CURRENT_UNKNOWN_MA;
        m->power_supply_status = TP_POWER_SUPPLY_UNKNOWN;
        return true;
    }
    m->current_ma = get_i32(&p);
    m->power_supply_status = get_u8(&p);
    return true;
}

size_t tp_pack_scan(const tp_scan_t *m, uint8_t *out)
{
    uint8_t *p = out;
    uint16_t i;
    if (m->count > TP_MAX_SCAN_BEAMS_PER_FRAME) {
        return 0;
    }
    put_u16(&p, m->scan_id);
    put_u16(&p, m->total);
    put_u16(&p, m->first);
    put_u16(&p, m->count);
    for (i = 0; i < m->count; ++i) {
        put_u16(&p, m->ranges_mm[i]);
    }
    return (size_t)(p - out);
}

bool tp_unpack_scan(const uint8_t *p, size_t len, tp_scan_t *m)
{
    uint16_t i;
    if (len < 8) {
        return false;
    }
    m->scan_id = get_u16(&p);
    m->total = get_u16(&p);
    m->first = get_u16(&p);
    m->count = get_u16(&p);
    if (m->count > TP_MAX_SCAN_BEAMS_PER_FRAME || len != 8u + 2u * (size_t)m->count ||
        (uint32_t)m->first + m->count > m->total) {
        return false;
    }
    for (i = 0; i < m->count; ++i) {
        m->ranges_mm[i] = get_u16(&p);
    }
    return true;
}

size_t tp_pack_heartbeat_ack(const tp_heartbeat_ack_t *m, uint8_t *out)
{
    uint8_t *p = out;
    put_u32(&p, m->host_us);
    put_u32(&p, m->t_ms);
    return (size_t)(p - out);
}

bool tp_unpack_heartbeat_ack(const uint8_t *p, size_t len, tp_heartbeat_ack_t *m)
{
    if (len != 8) {
        return false;
    }
    m->host_us = get_u32(&p);
    m->t_ms = get_u32(&p);
    return true;
}

size_t tp_pack_error(const tp_error_t *m, uint8_t *out)
{
    uint8_t *p = out;
    size_t n = m->text_len > TP_MAX_ERROR_TEXT ? TP_MAX_ERROR_TEXT : m->text_len;
    put_u8(&p, m->code);
    put_u8(&p, m->about_id);
    memcpy(p, m->text, n);
    p += n;
    return (size_t)(p - out);
}

bool tp_unpack_error(const uint8_t *p, size_t len, tp_error_t *m)
{
    if (len < 2 || len > 2u + TP_MAX_ERROR_TEXT) {
        return false;
    }
    m->code = get_u8(&p);
    m->about_id = get_u8(&p);
    m->text_len = (uint8_t)(len - 2);
    memcpy(m->text, p, m->text_len);
    return true;
}

size_t tp_pack_sim_dock_pose(const tp_sim_dock_pose_t *m, uint8_t *out)
{
    uint8_t *p = out;
    put_u32(&p, m->seed);
    put_i32(&p, m->x_mm);
    put_i32(&p, m->y_mm);
    put_i32(&p, m->yaw_urad);
    return (size_t)(p - out);
}

bool tp_unpack_sim_dock_pose(const uint8_t *p, size_t len, tp_sim_dock_pose_t *m)
{
    if (len != 16) {
        return false;
    }
    m->seed = get_u32(&p);
    m->x_mm = get_i32(&p);
    m->y_mm = get_i32(&p);
    m->yaw_urad = get_i32(&p);
    return true;
}

size_t tp_pack_sim_image(const tp_sim_image_t *m, uint8_t *out)
{
    uint8_t *p = out;
    if (m->data_len > TP_MAX_PAYLOAD - 11u ||
        m->data_len != (size_t)m->width * m->rows * 3u) {
        return 0;
    }
    put_u16(&p, m->frame_id);
    put_u16(&p, m->width);
    put_u16(&p, m->height);
    put_u16(&p, m->first_row);
    put_u16(&p, m->rows);
    put_u8(&p, m->encoding);
    if (m->data_len > 0) {
        memcpy(p, m->data, m->data_len);
    }
    p += m->data_len;
    return (size_t)(p - out);
}

bool tp_unpack_sim_image(const uint8_t *p, size_t len, tp_sim_image_t *m)
{
    if (len < 11) {
        return false;
    }
    m->frame_id = get_u16(&p);
    m->width = get_u16(&p);
    m->height = get_u16(&p);
    m->first_row = get_u16(&p);
    m->rows = get_u16(&p);
    m->encoding = get_u8(&p);
    m->data = p;
    m->data_len = len - 11u;
    return m->encoding == TP_IMAGE_ENCODING_RGB8 &&
           m->data_len == (size_t)m->width * m->rows * 3u &&
           (uint32_t)m->first_row + m->rows <= m->height;
}
