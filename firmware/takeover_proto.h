/*
 * takeover serial protocol, version 2: portable C99 codec for robot-base firmware.
 * (Version 2 adds the battery current and power_supply_status to STATE; a base may still speak
 * version 1 to a host that asks for it: tp_pack_state_v1.)
 *
 * Framing, CRC and message pack/unpack only: no hardware calls, no malloc, no globals, no
 * floating point. The specification is docs/serial-protocol.md; the Python implementation is
 * takeover/hw/serial/protocol.py, and both are checked against firmware/test_vectors.txt.
 *
 * Wire format of one frame:
 *
 *     COBS( msg_id:u8 | seq:u16 | payload:0..1024 bytes | crc:u16 ) 0x00
 *
 * CRC-16/IBM-3740 (a.k.a. CRC-16/CCITT-FALSE): poly 0x1021, init 0xFFFF, no reflection,
 * xorout 0x0000, check value 0x29B1 over "123456789". All fields are little-endian.
 *
 * Typical firmware use:
 *
 *     static tp_decoder_t rx;            // one per UART, zero it with tp_decoder_init
 *     tp_frame_t frame;
 *     while (uart_has_byte()) {
 *         if (tp_decoder_feed(&rx, uart_get_byte(), &frame) == TP_FRAME_READY) {
 *             handle(&frame);            // frame.payload points into rx, valid until next feed
 *         }
 *     }
 *
 *     uint8_t payload[TP_MAX_PAYLOAD], wire[TP_MAX_WIRE];
 *     size_t n = tp_pack_state(&state, payload);
 *     size_t w = tp_frame_encode(TP_MSG_STATE, tx_seq++, payload, n, wire, sizeof wire);
 *     uart_write(wire, w);
 */
#ifndef TAKEOVER_PROTO_H
#define TAKEOVER_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TP_PROTOCOL_VERSION 2u

#define TP_MAX_PAYLOAD 1024u
#define TP_HEADER_SIZE 3u /* msg_id:u8, seq:u16 */
#define TP_CRC_SIZE 2u
#define TP_MIN_FRAME (TP_HEADER_SIZE + TP_CRC_SIZE)
#define TP_MAX_FRAME (TP_HEADER_SIZE + TP_MAX_PAYLOAD + TP_CRC_SIZE)
/* COBS adds one code byte per started block of 254 bytes. */
#define TP_MAX_ENCODED (TP_MAX_FRAME + (TP_MAX_FRAME + 253u) / 254u)
/* An encoded frame plus its 0x00 delimiter: the size of a transmit buffer. */
#define TP_MAX_WIRE (TP_MAX_ENCODED + 1u)
#define TP_CRC16_CHECK 0x29B1u

/* Message ids. Bit 7: direction (0 host -> base, 1 base -> host). Ids with bits 6 and 5 set
 * (0x60-0x7F, 0xE0-0xFF) are simulator-only: a real base answers them with ERROR
 * UNKNOWN_MESSAGE and never sends them. */
enum {
    TP_MSG_HELLO = 0x01,
    TP_MSG_CMD_VEL = 0x02,
    TP_MSG_HEARTBEAT = 0x03,
    TP_MSG_SET_ESTOP = 0x04,
    TP_MSG_SIM_RESET = 0x60,
    TP_MSG_SIM_GET_DOCK_POSE = 0x61,
    TP_MSG_HELLO_ACK = 0x81,
    TP_MSG_STATE = 0x82,
    TP_MSG_SCAN = 0x83,
    TP_MSG_HEARTBEAT_ACK = 0x84,
    TP_MSG_ERROR = 0x85,
    TP_MSG_SIM_DOCK_POSE = 0xE0,
    TP_MSG_SIM_IMAGE = 0xE1
};

#define TP_IS_SIM_ONLY(id) (((id) & 0x60u) == 0x60u)

enum { TP_HELLO_WANT_SIM_IMAGES = 0x0001 };

enum {
    TP_CAP_LIDAR = 0x0001,
    TP_CAP_BATTERY = 0x0002,
    TP_CAP_BUMPER = 0x0004,
    TP_CAP_DOCK_CONTACT = 0x0008,
    TP_CAP_ESTOP = 0x0010,
    TP_CAP_SIM = 0x0080
};

enum {
    TP_STATE_ESTOP_LATCHED = 0x0001,
    TP_STATE_DOCKED = 0x0002,
    TP_STATE_BUMPER = 0x0004,
    TP_STATE_WATCHDOG_STOPPED = 0x0008,
    TP_STATE_READY = 0x0010
};

enum {
    TP_ERR_CODE_UNKNOWN_MESSAGE = 1,
    TP_ERR_CODE_BAD_LENGTH = 2,
    TP_ERR_CODE_NOT_READY = 3,
    TP_ERR_CODE_BAD_VALUE = 4,
    TP_ERR_CODE_VERSION_MISMATCH = 5
};

/* ---- CRC and COBS ---------------------------------------------------------------------- */

/* CRC-16/IBM-3740 of data, continuing from crc (start with 0xFFFF). */
uint16_t tp_crc16(uint16_t crc, const uint8_t *data, size_t len);

/* Canonical COBS. Returns the encoded length (no delimiter), or 0 if out_cap is too small.
 * out must not overlap in. An empty input encodes to the single byte 0x01. */
size_t tp_cobs_encode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);

/* Decodes in place is allowed (out == in). Returns false on a zero byte or a block that runs
 * past the end; *out_len receives the decoded length. out needs room for len bytes. */
bool tp_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t *out_len);

/* ---- frames ---------------------------------------------------------------------------- */

/* Encodes a frame and its 0x00 delimiter into out. Returns the number of bytes to send, or 0
 * if payload_len > TP_MAX_PAYLOAD or out_cap is too small (TP_MAX_WIRE is always enough). */
size_t tp_frame_encode(uint8_t msg_id, uint16_t seq, const uint8_t *payload, size_t payload_len,
                       uint8_t *out, size_t out_cap);

typedef struct {
    uint8_t msg_id;
    uint16_t seq;
    const uint8_t *payload; /* points into the decoder's buffer: valid until the next feed */
    size_t payload_len;
} tp_frame_t;

typedef struct {
    uint8_t buf[TP_MAX_ENCODED];
    size_t len;
    bool overflow;
    /* totals since tp_decoder_init */
    uint32_t frames_ok;
    uint32_t crc_errors;
    uint32_t cobs_errors;
    uint32_t short_frames;
    uint32_t oversized;
} tp_decoder_t;

/* Results of tp_decoder_feed. */
enum {
    TP_NOTHING = 0,         /* byte stored, or an idle delimiter */
    TP_FRAME_READY = 1,     /* *frame holds a valid frame */
    TP_REJECT_COBS = -1,    /* a frame ended but was not valid COBS */
    TP_REJECT_SHORT = -2,   /* shorter than header + CRC */
    TP_REJECT_CRC = -3,     /* CRC mismatch */
    TP_REJECT_OVERSIZED = -4 /* longer than TP_MAX_ENCODED (bytes dropped up to the next 0x00) */
};

void tp_decoder_init(tp_decoder_t *dec);

/* Feeds one received byte. Never fails: bad frames are counted and dropped, and the stream
 * resynchronises at the next 0x00. */
int tp_decoder_feed(tp_decoder_t *dec, uint8_t byte, tp_frame_t *frame);

/* ---- messages (fixed-point units in the field names) ----------------------------------- */

#define TP_MAX_SCAN_BEAMS_PER_FRAME ((TP_MAX_PAYLOAD - 8u) / 2u) /* 508 */
#define TP_MAX_ERROR_TEXT 64u
#define TP_NAME_SIZE 16u
#define TP_IMAGE_ENCODING_RGB8 0u

typedef struct { uint16_t version; uint16_t flags; uint32_t nonce; } tp_hello_t;
typedef struct { int16_t v_mmps; int16_t w_mradps; } tp_cmd_vel_t;
typedef struct { uint32_t host_us; } tp_heartbeat_t;
typedef struct { uint8_t engage; } tp_set_estop_t;
typedef struct { uint32_t seed; } tp_sim_reset_t;
typedef struct {
    uint16_t version;
    uint32_t nonce;
    uint16_t capabilities;
    uint16_t watchdog_ms;
    uint8_t state_rate_hz;
    uint8_t scan_rate_hz;
    uint8_t name[TP_NAME_SIZE]; /* ASCII, NUL-padded, not necessarily NUL-terminated */
} tp_hello_ack_t;
typedef struct {
    uint32_t t_ms;
    int32_t x_mm;
    int32_t y_mm;
    int32_t yaw_urad;
    int16_t v_mmps;
    int16_t w_mradps;
    uint16_t battery_permille;
    uint16_t flags;
    uint16_t last_cmd_seq;
    /* version 2: the battery current as measured, BatteryState's sign (REP 145: positive while
     * charging), or TP_CURRENT_UNKNOWN_MA; and sensor_msgs/BatteryState.power_supply_status
     * (TP_POWER_SUPPLY_*). A version-1 STATE decodes with these unknown. */
    int32_t current_ma;
    uint8_t power_supply_status;
} tp_state_t;
#define TP_STATE_SIZE 31u    /* version 2 */
#define TP_STATE_V1_SIZE 26u /* version 1: without current_ma and power_supply_status */
#define TP_CURRENT_UNKNOWN_MA INT32_MIN
enum {
    TP_POWER_SUPPLY_UNKNOWN = 0,
    TP_POWER_SUPPLY_CHARGING = 1,
    TP_POWER_SUPPLY_DISCHARGING = 2,
    TP_POWER_SUPPLY_NOT_CHARGING = 3,
    TP_POWER_SUPPLY_FULL = 4
};
typedef struct {
    uint16_t scan_id;
    uint16_t total;
    uint16_t first;
    uint16_t count;
    uint16_t ranges_mm[TP_MAX_SCAN_BEAMS_PER_FRAME]; /* 0: no return */
} tp_scan_t;
typedef struct { uint32_t host_us; uint32_t t_ms; } tp_heartbeat_ack_t;
typedef struct {
    uint8_t code;
    uint8_t about_id;
    uint8_t text_len;
    uint8_t text[TP_MAX_ERROR_TEXT];
} tp_error_t;
typedef struct { uint32_t seed; int32_t x_mm; int32_t y_mm; int32_t yaw_urad; } tp_sim_dock_pose_t;
typedef struct {
    uint16_t frame_id;
    uint16_t width;
    uint16_t height;
    uint16_t first_row;
    uint16_t rows;
    uint8_t encoding;
    const uint8_t *data; /* width * rows * 3 bytes; unpack points it into the payload */
    size_t data_len;
} tp_sim_image_t;

/* pack: writes the payload (out needs TP_MAX_PAYLOAD bytes) and returns its length, or 0 when
 * the message cannot be represented (too many beams, image rows too large).
 * unpack: returns false when the payload length or contents do not match the layout. */
size_t tp_pack_hello(const tp_hello_t *m, uint8_t *out);
bool tp_unpack_hello(const uint8_t *p, size_t len, tp_hello_t *m);
size_t tp_pack_cmd_vel(const tp_cmd_vel_t *m, uint8_t *out);
bool tp_unpack_cmd_vel(const uint8_t *p, size_t len, tp_cmd_vel_t *m);
size_t tp_pack_heartbeat(const tp_heartbeat_t *m, uint8_t *out);
bool tp_unpack_heartbeat(const uint8_t *p, size_t len, tp_heartbeat_t *m);
size_t tp_pack_set_estop(const tp_set_estop_t *m, uint8_t *out);
bool tp_unpack_set_estop(const uint8_t *p, size_t len, tp_set_estop_t *m);
size_t tp_pack_sim_reset(const tp_sim_reset_t *m, uint8_t *out);
bool tp_unpack_sim_reset(const uint8_t *p, size_t len, tp_sim_reset_t *m);
size_t tp_pack_hello_ack(const tp_hello_ack_t *m, uint8_t *out);
bool tp_unpack_hello_ack(const uint8_t *p, size_t len, tp_hello_ack_t *m);
size_t tp_pack_state(const tp_state_t *m, uint8_t *out);
/* STATE in version 1's layout (26 bytes), for a host that asked for version 1. */
size_t tp_pack_state_v1(const tp_state_t *m, uint8_t *out);
/* Either layout: 31 bytes (version 2) or 26 (version 1: current and status unknown). */
bool tp_unpack_state(const uint8_t *p, size_t len, tp_state_t *m);
size_t tp_pack_scan(const tp_scan_t *m, uint8_t *out);
bool tp_unpack_scan(const uint8_t *p, size_t len, tp_scan_t *m);
size_t tp_pack_heartbeat_ack(const tp_heartbeat_ack_t *m, uint8_t *out);
bool tp_unpack_heartbeat_ack(const uint8_t *p, size_t len, tp_heartbeat_ack_t *m);
size_t tp_pack_error(const tp_error_t *m, uint8_t *out);
bool tp_unpack_error(const uint8_t *p, size_t len, tp_error_t *m);
size_t tp_pack_sim_dock_pose(const tp_sim_dock_pose_t *m, uint8_t *out);
bool tp_unpack_sim_dock_pose(const uint8_t *p, size_t len, tp_sim_dock_pose_t *m);
size_t tp_pack_sim_image(const tp_sim_image_t *m, uint8_t *out);
bool tp_unpack_sim_image(const uint8_t *p, size_t len, tp_sim_image_t *m);

#ifdef __cplusplus
}
#endif

#endif /* TAKEOVER_PROTO_H */
