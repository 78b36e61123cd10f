"""The serial base: COBS + CRC-16 frames (`protocol`), the shared test vectors of the C codec
(`vectors`) and the link (`link`, schemes serial://, socket://, loop://, rfc2217://)."""
