package io.pagewire.transport.aeron;

import io.aeron.Image;
import io.aeron.logbuffer.ControlledFragmentHandler;
import io.aeron.logbuffer.FrameDescriptor;
import io.aeron.logbuffer.Header;
import org.agrona.DirectBuffer;

import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * Takes exactly one whole Aeron message (all its fragments) from an image, for the handshake, into a buffer that
 * grows up to a bound. Leaves the image at the start of the next message, where the frame reader takes over.
 * A message longer than the bound is consumed and reported as {@link #overflowBytes()}, never stored.
 * Not thread-safe.
 */
final class MessageCollector implements ControlledFragmentHandler {
    private final int maxBytes;
    private byte[] buf = new byte[256];
    private int length;
    private long overflow;
    private boolean started;
    private boolean complete;

    MessageCollector(int maxBytes) {
        this.maxBytes = maxBytes;
    }

    /**
     * Polls {@code image} for the rest of the current message.
     *
     * @return true once a whole message has been taken
     */
    boolean poll(Image image) {
        if (!complete) {
            image.controlledPoll(this, 16);
        }
        return complete;
    }

    @Override
    public Action onFragment(DirectBuffer buffer, int offset, int fragmentLength, Header header) {
        byte flags = header.flags();
        if ((flags & FrameDescriptor.BEGIN_FRAG_FLAG) != 0) {
            started = true;
            length = 0;
            overflow = 0;
        }
        if (!started) {
            return Action.CONTINUE; // the tail of a message that began before this image was joined
        }
        if (overflow > 0 || (long) length + fragmentLength > maxBytes) {
            overflow += fragmentLength;
        } else {
            if (length + fragmentLength > buf.length) {
                buf = Arrays.copyOf(buf, Math.min(maxBytes, Math.max(buf.length * 2, length + fragmentLength)));
            }
            buffer.getBytes(offset, buf, length, fragmentLength);
            length += fragmentLength;
        }
        if ((flags & FrameDescriptor.END_FRAG_FLAG) != 0) {
            complete = true;
            return Action.BREAK;
        }
        return Action.CONTINUE;
    }

    /** @return true once a whole message has been taken */
    boolean complete() {
        return complete;
    }

    /** @return bytes beyond the bound (0 when the message fit) */
    long overflowBytes() {
        return overflow == 0 ? 0 : overflow + length;
    }

    /** @return the message (valid until the next poll) */
    MemorySegment message() {
        return MemorySegment.ofArray(buf).asSlice(0, length);
    }
}
