/*
 * Host test of the C codec against the shared vectors, both ways.
 *
 *   test_codec VECTORS_IN C_VECTORS_OUT
 *
 * 1. Every vector in VECTORS_IN (written by the Python implementation) is checked byte for
 *    byte: CRCs, COBS encodings, frames packed from their fields, frames decoded back to the
 *    same fields, and rejected frames rejected for the same reason.
 * 2. C_VECTORS_OUT receives the C codec's own encoding of every frame vector plus randomly
 *    generated messages of every type, in the same format, for the Python tests to check.
 *
 * Exits 0 and prints "N passed, 0 failed" when everything agrees.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../takeover_proto.h"

static int passed;
static int failed;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (cond) {                                                        \
            ++passed;                                                      \
        } else {                                                           \
            ++failed;                                                      \
            fprintf(stderr, "FAIL line %d: ", line_no);                    \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

static int line_no;

/* ---- message descriptors (test-only: firmware calls the typed functions directly) ------ */

typedef enum { F_U8, F_U16, F_U32, F_I16, F_I32, F_NAME, F_TEXT, F_RANGES, F_DATA } ftype_t;

typedef struct {
    const char *name;
    size_t offset;
    ftype_t type;
} field_t;

typedef union {
    tp_hello_t hello;
    tp_cmd_vel_t cmd_vel;
    tp_heartbeat_t heartbeat;
    tp_set_estop_t set_estop;
    tp_sim_reset_t sim_reset;
    tp_hello_ack_t hello_ack;
    tp_state_t state;
    tp_scan_t scan;
    tp_heartbeat_ack_t heartbeat_ack;
    tp_error_t error;
    tp_sim_dock_pose_t sim_dock_pose;
    tp_sim_image_t sim_image;
} any_msg_t;

typedef struct {
    const char *name;
    uint8_t id;
    const field_t *fields;
    size_t n_fields;
    size_t (*pack)(const any_msg_t *m, uint8_t *out);
    bool (*unpack)(const uint8_t *p, size_t len, any_msg_t *m);
} msg_desc_t;

#define WRAP(member)                                                              \
    static size_t pack_##member(const any_msg_t *m, uint8_t *out)                 \
    {                                                                             \
        return tp_pack_##member(&m->member, out);                                 \
    }                                                                             \
    static bool unpack_##member(const uint8_t *p, size_t len, any_msg_t *m)       \
    {                                                                             \
        return tp_unpack_##member(p, len, &m->member);                            \
    }
WRAP(hello)
WRAP(cmd_vel)
WRAP(heartbeat)
WRAP(set_estop)
WRAP(sim_reset)
WRAP(hello_ack)
WRAP(state)
WRAP(scan)
WRAP(heartbeat_ack)
WRAP(error)
WRAP(sim_dock_pose)
WRAP(sim_image)

/* STATE in version 1's layout (a version-1 base, or a host that asked for version 1). */
static size_t pack_state_v1(const any_msg_t *m, uint8_t *out)
{
    return tp_pack_state_v1(&m->state, out);
}
static bool unpack_state_v1(const uint8_t *p, size_t len, any_msg_t *m)
{
    return len == TP_STATE_V1_SIZE && tp_unpack_state(p, len, &m->state);
}

static size_t pack_sim_get_dock_pose(const any_msg_t *m, uint8_t *out)
{
    (void)m;
    (void)out;
    return 0;
}
static bool unpack_sim_get_dock_pose(const uint8_t *p, size_t len, any_msg_t *m)
{
    (void)p;
    (void)m;
    return len == 0;
}

#define FLD(type, member, ft) { #member, offsetof(type, member), ft }
static const field_t hello_fields[] = {
    FLD(tp_hello_t, version, F_U16), FLD(tp_hello_t, flags, F_U16), FLD(tp_hello_t, nonce, F_U32)};
static const field_t cmd_vel_fields[] = {
    FLD(tp_cmd_vel_t, v_mmps, F_I16), FLD(tp_cmd_vel_t, w_mradps, F_I16)};
static const field_t heartbeat_fields[] = {FLD(tp_heartbeat_t, host_us, F_U32)};
static const field_t set_estop_fields[] = {FLD(tp_set_estop_t, engage, F_U8)};
static const field_t sim_reset_fields[] = {FLD(tp_sim_reset_t, seed, F_U32)};
static const field_t hello_ack_fields[] = {
    FLD(tp_hello_ack_t, version, F_U16),      FLD(tp_hello_ack_t, nonce, F_U32),
    FLD(tp_hello_ack_t, capabilities, F_U16), FLD(tp_hello_ack_t, watchdog_ms, F_U16),
    FLD(tp_hello_ack_t, state_rate_hz, F_U8), FLD(tp_hello_ack_t, scan_rate_hz, F_U8),
    FLD(tp_hello_ack_t, name, F_NAME)};
static const field_t state_fields[] = {
    FLD(tp_state_t, t_ms, F_U32),           FLD(tp_state_t, x_mm, F_I32),
    FLD(tp_state_t, y_mm, F_I32),           FLD(tp_state_t, yaw_urad, F_I32),
    FLD(tp_state_t, v_mmps, F_I16),         FLD(tp_state_t, w_mradps, F_I16),
    FLD(tp_state_t, battery_permille, F_U16), FLD(tp_state_t, flags, F_U16),
    FLD(tp_state_t, last_cmd_seq, F_U16),   FLD(tp_state_t, current_ma, F_I32),
    FLD(tp_state_t, power_supply_status, F_U8)};
static const field_t scan_fields[] = {
    FLD(tp_scan_t, scan_id, F_U16), FLD(tp_scan_t, total, F_U16), FLD(tp_scan_t, first, F_U16),
    FLD(tp_scan_t, ranges_mm, F_RANGES)};
static const field_t heartbeat_ack_fields[] = {
    FLD(tp_heartbeat_ack_t, host_us, F_U32), FLD(tp_heartbeat_ack_t, t_ms, F_U32)};
static const field_t error_fields[] = {
    FLD(tp_error_t, code, F_U8), FLD(tp_error_t, about_id, F_U8), FLD(tp_error_t, text, F_TEXT)};
static const field_t sim_dock_pose_fields[] = {
    FLD(tp_sim_dock_pose_t, seed, F_U32), FLD(tp_sim_dock_pose_t, x_mm, F_I32),
    FLD(tp_sim_dock_pose_t, y_mm, F_I32), FLD(tp_sim_dock_pose_t, yaw_urad, F_I32)};
static const field_t sim_image_fields[] = {
    FLD(tp_sim_image_t, frame_id, F_U16), FLD(tp_sim_image_t, width, F_U16),
    FLD(tp_sim_image_t, height, F_U16),   FLD(tp_sim_image_t, first_row, F_U16),
    FLD(tp_sim_image_t, rows, F_U16),     FLD(tp_sim_image_t, encoding, F_U8),
    FLD(tp_sim_image_t, data, F_DATA)};

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define DESC(NAME, id, member) \
    { NAME, id, member##_fields, N(member##_fields), pack_##member, unpack_##member }
static const msg_desc_t messages[] = {
    DESC("HELLO", TP_MSG_HELLO, hello),
    DESC("CMD_VEL", TP_MSG_CMD_VEL, cmd_vel),
    DESC("HEARTBEAT", TP_MSG_HEARTBEAT, heartbeat),
    DESC("SET_ESTOP", TP_MSG_SET_ESTOP, set_estop),
    DESC("SIM_RESET", TP_MSG_SIM_RESET, sim_reset),
    {"SIM_GET_DOCK_POSE", TP_MSG_SIM_GET_DOCK_POSE, NULL, 0, pack_sim_get_dock_pose,
     unpack_sim_get_dock_pose},
    DESC("HELLO_ACK", TP_MSG_HELLO_ACK, hello_ack),
    DESC("STATE", TP_MSG_STATE, state),
    {"STATE_V1", TP_MSG_STATE, state_fields, N(state_fields) - 2, pack_state_v1,
     unpack_state_v1},
    DESC("SCAN", TP_MSG_SCAN, scan),
    DESC("HEARTBEAT_ACK", TP_MSG_HEARTBEAT_ACK, heartbeat_ack),
    DESC("ERROR", TP_MSG_ERROR, error),
    DESC("SIM_DOCK_POSE", TP_MSG_SIM_DOCK_POSE, sim_dock_pose),
    DESC("SIM_IMAGE", TP_MSG_SIM_IMAGE, sim_image),
};

static const msg_desc_t *find_message(const char *name)
{
    size_t i;
    for (i = 0; i < N(messages); ++i) {
        if (strcmp(messages[i].name, name) == 0) {
            return &messages[i];
        }
    }
    return NULL;
}

/* ---- hex and text helpers -------------------------------------------------------------- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Parses hex ("-" is empty) into out; returns the length, or -1 on bad input. */
static long parse_hex(const char *text, uint8_t *out, size_t cap)
{
    size_t n = 0;
    if (strcmp(text, "-") == 0) {
        return 0;
    }
    while (text[0] && text[1]) {
        int hi = hexval(text[0]), lo = hexval(text[1]);
        if (hi < 0 || lo < 0 || n >= cap) {
            return -1;
        }
        out[n++] = (uint8_t)(hi * 16 + lo);
        text += 2;
    }
    return text[0] ? -1 : (long)n;
}

static void write_hex(FILE *f, const uint8_t *data, size_t len)
{
    size_t i;
    if (len == 0) {
        fputc('-', f);
    }
    for (i = 0; i < len; ++i) {
        fprintf(f, "%02x", data[i]);
    }
}

/* Finds "key=" among the tokens and returns the value, or NULL. */
static const char *token_value(char **tokens, int n_tokens, const char *key)
{
    int i;
    size_t k = strlen(key);
    for (i = 0; i < n_tokens; ++i) {
        if (strncmp(tokens[i], key, k) == 0 && tokens[i][k] == '=') {
            return tokens[i] + k + 1;
        }
    }
    return NULL;
}

static uint8_t data_store[TP_MAX_PAYLOAD]; /* backs tp_sim_image_t.data for parsed vectors */

/* Fills *m from the tokens; returns false if a field is missing or malformed. */
static bool parse_fields(const msg_desc_t *d, char **tokens, int n_tokens, any_msg_t *m)
{
    size_t i;
    memset(m, 0, sizeof *m);
    for (i = 0; i < d->n_fields; ++i) {
        const field_t *f = &d->fields[i];
        const char *v = token_value(tokens, n_tokens, f->name);
        uint8_t *base = (uint8_t *)m + f->offset;
        long long x;
        long n;
        if (v == NULL) {
            return false;
        }
        x = strtoll(v, NULL, 10);
        switch (f->type) {
        case F_U8: *(uint8_t *)base = (uint8_t)x; break;
        case F_U16: *(uint16_t *)base = (uint16_t)x; break;
        case F_U32: *(uint32_t *)base = (uint32_t)x; break;
        case F_I16: *(int16_t *)base = (int16_t)x; break;
        case F_I32: *(int32_t *)base = (int32_t)x; break;
        case F_NAME:
            n = parse_hex(v, m->hello_ack.name, TP_NAME_SIZE);
            if (n < 0) return false;
            break;
        case F_TEXT:
            n = parse_hex(v, m->error.text, TP_MAX_ERROR_TEXT);
            if (n < 0) return false;
            m->error.text_len = (uint8_t)n;
            break;
        case F_DATA:
            n = parse_hex(v, data_store, sizeof data_store);
            if (n < 0) return false;
            m->sim_image.data = data_store;
            m->sim_image.data_len = (size_t)n;
            break;
        case F_RANGES: {
            const char *p = v;
            uint16_t count = 0;
            if (strcmp(v, "-") != 0) {
                for (;;) {
                    char *end;
                    unsigned long r = strtoul(p, &end, 10);
                    if (end == p || count >= TP_MAX_SCAN_BEAMS_PER_FRAME) return false;
                    m->scan.ranges_mm[count++] = (uint16_t)r;
                    if (*end != ',') break;
                    p = end + 1;
                }
            }
            m->scan.count = count;
            break;
        }
        }
    }
    return true;
}

static void write_fields(FILE *f, const msg_desc_t *d, const any_msg_t *m)
{
    size_t i, k;
    for (i = 0; i < d->n_fields; ++i) {
        const field_t *fd = &d->fields[i];
        const uint8_t *base = (const uint8_t *)m + fd->offset;
        fprintf(f, " %s=", fd->name);
        switch (fd->type) {
        case F_U8: fprintf(f, "%u", (unsigned)*(const uint8_t *)base); break;
        case F_U16: fprintf(f, "%u", (unsigned)*(const uint16_t *)base); break;
        case F_U32: fprintf(f, "%" PRIu32, *(const uint32_t *)base); break;
        case F_I16: fprintf(f, "%d", (int)*(const int16_t *)base); break;
        case F_I32: fprintf(f, "%" PRId32, *(const int32_t *)base); break;
        case F_NAME:
            k = TP_NAME_SIZE;
            while (k > 0 && m->hello_ack.name[k - 1] == 0) --k; /* NUL padding is not content */
            write_hex(f, m->hello_ack.name, k);
            break;
        case F_TEXT: write_hex(f, m->error.text, m->error.text_len); break;
        case F_DATA: write_hex(f, m->sim_image.data, m->sim_image.data_len); break;
        case F_RANGES:
            if (m->scan.count == 0) fputc('-', f);
            for (k = 0; k < m->scan.count; ++k) {
                fprintf(f, k ? ",%u" : "%u", (unsigned)m->scan.ranges_mm[k]);
            }
            break;
        }
    }
}

static void write_frame_line(FILE *f, const msg_desc_t *d, uint16_t seq, const any_msg_t *m)
{
    uint8_t payload[TP_MAX_PAYLOAD], wire[TP_MAX_WIRE];
    size_t n = d->pack(m, payload);
    size_t w = tp_frame_encode(d->id, seq, payload, n, wire, sizeof wire);
    fprintf(f, "frame %s seq=%u", d->name, (unsigned)seq);
    write_fields(f, d, m);
    fputs(" wire=", f);
    write_hex(f, wire, w);
    fputc('\n', f);
}

/* ---- checks ------------------------------------------------------------------------------ */

static void check_crc(char **tok, int n)
{
    uint8_t data[4096];
    long len = n >= 3 ? parse_hex(tok[1], data, sizeof data) : -1;
    unsigned long want = n >= 3 ? strtoul(tok[2], NULL, 16) : 0;
    CHECK(len >= 0, "bad crc vector");
    if (len >= 0) {
        uint16_t got = tp_crc16(0xFFFFu, data, (size_t)len);
        CHECK(got == want, "crc %04x, expected %04lx", got, want);
    }
}

static void check_cobs(char **tok, int n)
{
    uint8_t raw[4096], enc[4096], out[4096];
    long raw_len = n >= 3 ? parse_hex(tok[1], raw, sizeof raw) : -1;
    long enc_len = n >= 3 ? parse_hex(tok[2], enc, sizeof enc) : -1;
    size_t got_len, dec_len = 0;
    CHECK(raw_len >= 0 && enc_len >= 0, "bad cobs vector");
    if (raw_len < 0 || enc_len < 0) return;
    got_len = tp_cobs_encode(raw, (size_t)raw_len, out, sizeof out);
    CHECK(got_len == (size_t)enc_len && memcmp(out, enc, got_len) == 0, "cobs encode differs");
    CHECK(tp_cobs_decode(enc, (size_t)enc_len, out, &dec_len), "cobs decode failed");
    CHECK(dec_len == (size_t)raw_len && memcmp(out, raw, dec_len) == 0, "cobs decode differs");
    memcpy(out, enc, (size_t)enc_len); /* in place */
    CHECK(tp_cobs_decode(out, (size_t)enc_len, out, &dec_len) && dec_len == (size_t)raw_len &&
              memcmp(out, raw, dec_len) == 0,
          "in-place cobs decode differs");
}

static int frames_in_stream;

static void check_frame(char **tok, int n, FILE *out)
{
    const msg_desc_t *d = n >= 2 ? find_message(tok[1]) : NULL;
    const char *seq_text = token_value(tok, n, "seq");
    const char *wire_text = token_value(tok, n, "wire");
    uint8_t wire[TP_MAX_WIRE + 8], payload[TP_MAX_PAYLOAD], enc[TP_MAX_WIRE];
    any_msg_t m, back;
    long wire_len;
    size_t plen, elen, i;
    uint16_t seq;
    tp_decoder_t dec;
    tp_frame_t frame;
    int got = 0, result;

    CHECK(d != NULL && seq_text != NULL && wire_text != NULL, "bad frame vector");
    if (d == NULL || seq_text == NULL || wire_text == NULL) return;
    seq = (uint16_t)strtoul(seq_text, NULL, 10);
    wire_len = parse_hex(wire_text, wire, sizeof wire);
    CHECK(wire_len > 0 && parse_fields(d, tok, n, &m), "%s: bad fields", d->name);
    if (wire_len <= 0) return;

    /* Python -> C, encoding: the same fields give the same bytes. */
    plen = d->pack(&m, payload);
    elen = tp_frame_encode(d->id, seq, payload, plen, enc, sizeof enc);
    CHECK(elen == (size_t)wire_len && memcmp(enc, wire, elen) == 0, "%s seq=%u: wire differs",
          d->name, (unsigned)seq);

    /* Python -> C, decoding: the bytes give one frame with the same fields. */
    tp_decoder_init(&dec);
    for (i = 0; i < (size_t)wire_len; ++i) {
        result = tp_decoder_feed(&dec, wire[i], &frame);
        if (result == TP_FRAME_READY) {
            ++got;
            CHECK(frame.msg_id == d->id && frame.seq == seq, "%s: id/seq differ", d->name);
            memset(&back, 0, sizeof back);
            CHECK(d->unpack(frame.payload, frame.payload_len, &back), "%s: unpack failed",
                  d->name);
            plen = d->pack(&back, payload);
            CHECK(plen == frame.payload_len && memcmp(payload, frame.payload, plen) == 0,
                  "%s: pack(unpack(payload)) differs", d->name);
            if (out) write_frame_line(out, d, seq, &back);
        } else {
            CHECK(result == TP_NOTHING, "%s: decoder rejected a good frame (%d)", d->name, result);
        }
    }
    CHECK(got == 1 && dec.frames_ok == 1, "%s: %d frames decoded, expected 1", d->name, got);
    ++frames_in_stream;
}

static void check_reject(char **tok, int n)
{
    const char *reason = n >= 2 ? tok[1] : "";
    const char *wire_text = token_value(tok, n, "wire");
    uint8_t wire[4 * TP_MAX_WIRE];
    long wire_len = wire_text ? parse_hex(wire_text, wire, sizeof wire) : -1;
    tp_decoder_t dec;
    tp_frame_t frame;
    int want, seen = 0, frames = 0, result;
    long i;

    if (strcmp(reason, "cobs") == 0) want = TP_REJECT_COBS;
    else if (strcmp(reason, "short") == 0) want = TP_REJECT_SHORT;
    else if (strcmp(reason, "crc") == 0) want = TP_REJECT_CRC;
    else want = TP_REJECT_OVERSIZED;
    CHECK(wire_len > 0, "bad reject vector");
    tp_decoder_init(&dec);
    for (i = 0; i < wire_len; ++i) {
        result = tp_decoder_feed(&dec, wire[i], &frame);
        if (result == want) ++seen;
        if (result == TP_FRAME_READY) ++frames;
    }
    CHECK(seen == 1 && frames == 0, "reject %s: seen %d rejections, %d frames", reason, seen,
          frames);
}

/* ---- random messages for the Python side ------------------------------------------------ */

static uint32_t rng_state = 0x12345678u;
static uint32_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static uint8_t random_data[TP_MAX_PAYLOAD];

static void randomise(const msg_desc_t *d, any_msg_t *m)
{
    size_t i, k;
    bool zeros = (rnd() & 3u) == 0; /* sometimes mostly zero bytes: COBS corner cases */
    memset(m, 0, sizeof *m);
    for (i = 0; i < d->n_fields; ++i) {
        const field_t *f = &d->fields[i];
        uint8_t *base = (uint8_t *)m + f->offset;
        uint32_t r = zeros ? (rnd() & 1u) : rnd();
        switch (f->type) {
        case F_U8: *(uint8_t *)base = (uint8_t)r; break;
        case F_U16: *(uint16_t *)base = (uint16_t)r; break;
        case F_U32: *(uint32_t *)base = r; break;
        case F_I16: *(int16_t *)base = (int16_t)(int32_t)(r % 65536u) ; break;
        case F_I32: *(int32_t *)base = (int32_t)(r & 0x7FFFFFFFu) * ((rnd() & 1u) ? -1 : 1); break;
        case F_NAME:
            for (k = 0; k < TP_NAME_SIZE; ++k) m->hello_ack.name[k] = zeros ? 0 : (uint8_t)rnd();
            break;
        case F_TEXT:
            m->error.text_len = (uint8_t)(rnd() % (TP_MAX_ERROR_TEXT + 1u));
            for (k = 0; k < m->error.text_len; ++k) m->error.text[k] = zeros ? 0 : (uint8_t)rnd();
            break;
        case F_RANGES:
            m->scan.count = (uint16_t)(rnd() % (TP_MAX_SCAN_BEAMS_PER_FRAME + 1u));
            m->scan.first = (uint16_t)(rnd() % 1000u);
            m->scan.total = (uint16_t)(m->scan.first + m->scan.count + rnd() % 100u);
            for (k = 0; k < m->scan.count; ++k) {
                m->scan.ranges_mm[k] = zeros ? (uint16_t)(rnd() & 0x100u) : (uint16_t)rnd();
            }
            break;
        case F_DATA: {
            tp_sim_image_t *im = &m->sim_image;
            im->encoding = TP_IMAGE_ENCODING_RGB8;
            im->width = (uint16_t)(1u + rnd() % 64u);
            im->rows = (uint16_t)(rnd() % (1u + (TP_MAX_PAYLOAD - 11u) / (3u * im->width)));
            im->first_row = (uint16_t)(rnd() % 200u);
            im->height = (uint16_t)(im->first_row + im->rows + rnd() % 50u);
            im->data_len = (size_t)im->width * im->rows * 3u;
            for (k = 0; k < im->data_len; ++k) random_data[k] = zeros ? 0 : (uint8_t)rnd();
            im->data = random_data;
            break;
        }
        }
    }
}

static void write_random_vectors(FILE *out, int per_type)
{
    size_t i;
    int k;
    any_msg_t m, back;
    uint8_t payload[TP_MAX_PAYLOAD];
    for (i = 0; i < N(messages); ++i) {
        for (k = 0; k < per_type; ++k) {
            size_t n;
            randomise(&messages[i], &m);
            if (messages[i].id == TP_MSG_SIM_IMAGE) {
                m.sim_image.encoding = TP_IMAGE_ENCODING_RGB8;
            }
            n = messages[i].pack(&m, payload);
            /* C round trip before handing the vector over */
            CHECK(messages[i].unpack(payload, n, &back), "%s: random round trip failed",
                  messages[i].name);
            write_frame_line(out, &messages[i], (uint16_t)rnd(), &m);
        }
    }
}

/* A stream of every frame vector with garbage in between: the decoder recovers them all. */
static void check_resync(const char *path)
{
    FILE *f = fopen(path, "r");
    static char line[1 << 15];
    uint8_t wire[TP_MAX_WIRE + 8];
    tp_decoder_t dec;
    tp_frame_t frame;
    int frames = 0, expected = 0;
    long i, n;
    tp_decoder_init(&dec);
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        char *w = strstr(line, " wire=");
        if (strncmp(line, "frame ", 6) != 0 || !w) continue;
        w[6 + strcspn(w + 6, " \r\n")] = '\0';
        n = parse_hex(w + 6, wire, sizeof wire);
        for (i = 0; i < 7; ++i) { /* garbage without a delimiter, then the frame */
            (void)tp_decoder_feed(&dec, (uint8_t)(0x11u * (unsigned)(i + 1)), &frame);
        }
        (void)tp_decoder_feed(&dec, 0x00, &frame);
        for (i = 0; i < n; ++i) {
            if (tp_decoder_feed(&dec, wire[i], &frame) == TP_FRAME_READY) ++frames;
        }
        ++expected;
    }
    fclose(f);
    line_no = 0;
    CHECK(frames == expected, "resync: %d of %d frames recovered", frames, expected);
}

int main(int argc, char **argv)
{
    static char line[1 << 15];
    char *tokens[1200];
    FILE *in, *out;
    uint8_t check[] = "123456789";

    if (argc != 3) {
        fprintf(stderr, "usage: %s VECTORS_IN C_VECTORS_OUT\n", argv[0]);
        return 2;
    }
    in = fopen(argv[1], "r");
    out = fopen(argv[2], "w");
    if (!in || !out) {
        fprintf(stderr, "cannot open %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    CHECK(tp_crc16(0xFFFFu, check, 9) == TP_CRC16_CHECK, "CRC-16/IBM-3740 check value");
    fputs("# written by firmware/test/test_codec.c: the C codec's encodings\n", out);

    while (fgets(line, sizeof line, in)) {
        int n = 0;
        char *p = strtok(line, " \r\n");
        ++line_no;
        while (p && n < (int)N(tokens)) {
            tokens[n++] = p;
            p = strtok(NULL, " \r\n");
        }
        if (n == 0 || tokens[0][0] == '#') continue;
        if (strcmp(tokens[0], "crc") == 0) check_crc(tokens, n);
        else if (strcmp(tokens[0], "cobs") == 0) check_cobs(tokens, n);
        else if (strcmp(tokens[0], "frame") == 0) check_frame(tokens, n, out);
        else if (strcmp(tokens[0], "reject") == 0) check_reject(tokens, n);
        else CHECK(0, "unknown vector kind %s", tokens[0]);
    }
    fclose(in);
    CHECK(frames_in_stream > 0, "no frame vectors in %s", argv[1]);
    check_resync(argv[1]);
    write_random_vectors(out, 40);
    fclose(out);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
