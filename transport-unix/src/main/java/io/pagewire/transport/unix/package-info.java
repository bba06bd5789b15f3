/**
 * The unix domain socket transport: what a unix socket adds to the kit's stream layer, and nothing else.
 *
 * <h2>Design</h2>
 * Sockets are dialled by path (no DSCP, keepalive or pacing: the peer is on this host); a listener binds
 * its path, replaces a stale socket file nobody listens on, and removes its file when it closes. With
 * {@code share-memory=true} the source sends, right after its HELLO, one MEMORY frame carrying the file
 * descriptors of its memfd- or file-backed regions (SCM_RIGHTS); the destination checks every descriptor
 * (a regular file long enough for the region at its offset) and hands each to its handler
 * ({@code MessageHandler.onSharedRegion}) before any frame arrives, so both sides map the same memory and
 * those regions' pages never cross the socket.
 *
 * <h2>Threading</h2>
 * As the stream layer: one thread per socket; descriptors received in a handshake belong to that
 * handshake's thread until they are handed to the handler or closed.
 */
package io.pagewire.transport.unix;
