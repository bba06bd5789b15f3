package io.pagewire.transport.rdma.sim;

import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.LongAdder;

/**
 * What the simulated fabric was asked to do, counted as a NIC's counters would be: verbs calls,
 * work requests by kind, bytes moved, registrations. The benchmark divides these by pages moved
 * to report the transport's work per page. Values are individually current.
 */
public final class SimStats {
    final LongAdder postSendCalls = new LongAdder();
    final LongAdder writeRequests = new LongAdder();
    final LongAdder sendRequests = new LongAdder();
    final LongAdder readRequests = new LongAdder();
    final LongAdder writeBytes = new LongAdder();
    final LongAdder sendBytes = new LongAdder();
    final LongAdder postRecvCalls = new LongAdder();
    final LongAdder pollCalls = new LongAdder();
    final LongAdder completions = new LongAdder();
    final LongAdder registrations = new LongAdder();
    final LongAdder deregistrations = new LongAdder();
    final AtomicLong liveRegistrations = new AtomicLong();
    final AtomicLong liveRegisteredBytes = new AtomicLong();
    final AtomicLong liveQueuePairs = new AtomicLong();

    SimStats() {
    }

    /** @return {@code ibv_post_send} calls (each posts a linked list of work requests) */
    public long postSendCalls() {
        return postSendCalls.sum();
    }

    /** @return RDMA WRITE work requests executed */
    public long writeRequests() {
        return writeRequests.sum();
    }

    /** @return SEND work requests executed */
    public long sendRequests() {
        return sendRequests.sum();
    }

    /** @return RDMA READ work requests executed */
    public long readRequests() {
        return readRequests.sum();
    }

    /** @return bytes placed by RDMA WRITE */
    public long writeBytes() {
        return writeBytes.sum();
    }

    /** @return bytes carried by SENDs */
    public long sendBytes() {
        return sendBytes.sum();
    }

    /** @return {@code ibv_post_recv} calls */
    public long postRecvCalls() {
        return postRecvCalls.sum();
    }

    /** @return {@code ibv_poll_cq} calls */
    public long pollCalls() {
        return pollCalls.sum();
    }

    /** @return completions delivered to completion queues */
    public long completions() {
        return completions.sum();
    }

    /** @return {@code ibv_reg_mr} calls */
    public long registrations() {
        return registrations.sum();
    }

    /** @return {@code ibv_dereg_mr} calls */
    public long deregistrations() {
        return deregistrations.sum();
    }

    /** @return registrations alive now */
    public long liveRegistrations() {
        return liveRegistrations.get();
    }

    /** @return bytes registered now (what would be pinned) */
    public long liveRegisteredBytes() {
        return liveRegisteredBytes.get();
    }

    /** @return queue pairs not yet destroyed */
    public long liveQueuePairs() {
        return liveQueuePairs.get();
    }

    @Override
    public String toString() {
        return "postSend=" + postSendCalls() + " writes=" + writeRequests() + " sends=" + sendRequests() + " reads=" + readRequests()
                + " writeBytes=" + writeBytes() + " sendBytes=" + sendBytes() + " postRecv=" + postRecvCalls() + " polls=" + pollCalls()
                + " completions=" + completions() + " reg=" + registrations() + " dereg=" + deregistrations() + " liveReg="
                + liveRegistrations() + " liveRegBytes=" + liveRegisteredBytes() + " liveQps=" + liveQueuePairs();
    }
}
