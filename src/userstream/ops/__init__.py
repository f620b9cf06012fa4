"""Operations commands: `userstream record`, `userstream replay` and `userstream doctor`.

This package owns the tools a user reaches for when something looks wrong: `recording` (the file format of
raw frames with their receive times), `record` (capture a live stream into one), `replay` (feed one through
the same protocol parsers the client uses, which is how a parsing bug is reported), and `doctor` (one
line per check, from DNS to the ping round trip). It builds on the client and the protocol modules and
changes neither; docs/operations.md describes all three.
"""
