package io.pagewire.transport.rdma.sim;

import io.pagewire.transport.rdma.verbs.CompletionQueue;
import io.pagewire.transport.rdma.verbs.MemoryRegion;
import io.pagewire.transport.rdma.verbs.ProtectionDomain;
import io.pagewire.transport.rdma.verbs.QpConfig;
import io.pagewire.transport.rdma.verbs.QueuePair;
import io.pagewire.transport.rdma.verbs.RdmaDevice;
import io.pagewire.transport.rdma.verbs.RdmaEndpoint;
import io.pagewire.transport.rdma.verbs.RdmaFabric;
import io.pagewire.transport.rdma.verbs.RdmaServer;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.rdma.verbs.VerbsException;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ThreadLocalRandom;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;

/**
 * An in-process RDMA fabric: one simulated device ({@code sim0}) shared by every endpoint of the
 * JVM, a connection manager keyed by port, and queue pairs whose engine threads really copy
 * bytes between registered memory while enforcing what hardware enforces (see
 * {@link SimQueuePair}). Both peers of a connection must live in this JVM.
 *
 * <p>Registration is real bookkeeping: every registration gets random lkey and rkey values,
 * lengths over {@link Verbs#MAX_REGISTRATION_BYTES} are refused (DiSNi's {@code int} length),
 * remote write access requires local write access (as {@code ibv_reg_mr} requires), and a
 * protection domain closed with live registrations is an error. {@link #stats()} counts the
 * verbs work done.
 */
public final class SimFabric implements RdmaFabric {
    private static final SimFabric INSTANCE = new SimFabric();

    final SimStats stats = new SimStats();
    private final SimDevice device = new SimDevice();
    private final ConcurrentHashMap<Integer, SimServer> servers = new ConcurrentHashMap<>();
    private final KeyTable lkeys = new KeyTable();
    private final KeyTable rkeys = new KeyTable();
    private final Set<SimQueuePair> queuePairs = ConcurrentHashMap.newKeySet();
    private final AtomicInteger nextPort = new AtomicInteger(20_000);
    private volatile long retryTimeoutNs = TimeUnit.SECONDS.toNanos(1);

    private SimFabric() {
    }

    /** @return the JVM's simulated fabric */
    /**
     * A test's recording of a listener's sources on the wire: each active queue pair's connect private data
     * (when it connects) and every SEND message it posts, as the bytes went.
     */
    public interface Tap {
        void connecting(QueuePair qp, byte[] privateData);

        void sent(QueuePair qp, byte[] message);
    }

    private final java.util.Map<Integer, Tap> taps = new java.util.concurrent.ConcurrentHashMap<>();
    private final java.util.Map<Integer, Hold> holds = new java.util.concurrent.ConcurrentHashMap<>();

    /** Connect requests to a port whose private data matches, held until released. */
    private record Hold(java.util.function.Predicate<byte[]> which, java.util.concurrent.CountDownLatch release, Runnable onHeld) {
    }

    /** Records the sources of the listener at {@code port} until the returned handle is closed. */
    public AutoCloseable tap(int port, Tap tap) {
        taps.put(port, tap);
        return () -> taps.remove(port, tap);
    }

    /**
     * Holds the next connect request to {@code port} whose private data {@code which} matches (calling {@code onHeld})
     * until {@code release} opens or the connect times out; unless the returned handle is closed first.
     */
    public AutoCloseable hold(int port, java.util.function.Predicate<byte[]> which, java.util.concurrent.CountDownLatch release, Runnable onHeld) {
        Hold h = new Hold(which, release, onHeld);
        holds.put(port, h);
        return () -> holds.remove(port, h);
    }

    Tap tapOf(int port) {
        return taps.get(port);
    }

    /** A connect request to {@code port}: waits while a hold matches it. */
    void gate(int port, byte[] privateData, long timeoutNs) throws InterruptedException {
        Hold h = holds.get(port);
        if (h != null && h.which.test(privateData) && holds.remove(port, h)) { // one request: the next ones pass
            h.onHeld.run();
            h.release.await(timeoutNs, TimeUnit.NANOSECONDS);
        }
    }

    public static SimFabric instance() {
        return INSTANCE;
    }

    /** @return the fabric's counters */
    public SimStats stats() {
        return stats;
    }

    /** @return how long a work request is retried in a partition before {@code RETRY_EXC_ERR} */
    public long retryTimeoutNs() {
        return retryTimeoutNs;
    }

    /** @param ns transport retry timeout of the simulated hardware (default 1 s) */
    public void retryTimeoutNs(long ns) {
        this.retryTimeoutNs = ns;
    }

    /** @return live queue pairs whose connection was made to the listener on {@code port}, both sides */
    public List<SimQueuePair> queuePairs(int port) {
        List<SimQueuePair> out = new ArrayList<>();
        for (SimQueuePair qp : queuePairs) {
            if (qp.serverPort() == port) {
                out.add(qp);
            }
        }
        return out;
    }

    @Override
    public String name() {
        return "simulated";
    }

    @Override
    public RdmaServer listen(String host, int port) throws VerbsException {
        if (port < 0 || port > 65535) {
            throw new VerbsException("rdma_bind_addr: port " + port + " out of range");
        }
        if (port == 0) {
            while (true) {
                int p = nextPort.getAndIncrement();
                if (p > 65535) {
                    throw new VerbsException("rdma_bind_addr: no free simulated port left");
                }
                SimServer s = new SimServer(this, host, p);
                if (servers.putIfAbsent(p, s) == null) {
                    return s;
                }
            }
        }
        SimServer s = new SimServer(this, host, port);
        if (servers.putIfAbsent(port, s) != null) {
            throw new VerbsException("rdma_bind_addr " + host + ":" + port + ": address already in use (EADDRINUSE)");
        }
        return s;
    }

    @Override
    public RdmaEndpoint resolve(String host, int port, long timeoutNs) throws VerbsException {
        if (host == null || host.isEmpty()) {
            throw new VerbsException("rdma_resolve_addr: no host");
        }
        return new SimEndpoint(this, host, port);
    }

    void removeServer(SimServer s) {
        servers.remove(s.port(), s);
    }

    SimServer server(int port) {
        return servers.get(port);
    }

    SimMr lkey(int key) {
        return lkeys.get(key);
    }

    /** @return whether {@code pd}, a domain of this fabric, was deallocated ({@code ibv_dealloc_pd}) */
    public boolean isDeallocated(ProtectionDomain pd) {
        return ((SimPd) pd).closed;
    }

    /** @return whether {@code rkey} names a live registration (for tests: keys are dropped at deregistration) */
    public boolean isLiveRkey(int rkey) {
        return rkeys.get(rkey) != null;
    }

    SimMr rkey(int key) {
        return rkeys.get(key);
    }

    /**
     * Keys to registrations without boxing on the lookup path (the simulated NIC looks a key up
     * for every work request): a key's low 18 bits index a slot, its high 14 bits are random and
     * non-zero, so a stale or guessed key finds nothing or another registration's slot with a
     * different key, both refused.
     */
    static final class KeyTable {
        private static final int BITS = 18;
        private final java.util.concurrent.atomic.AtomicReferenceArray<SimMr> slots = new java.util.concurrent.atomic.AtomicReferenceArray<>(1 << BITS);
        private final int[] free = new int[1 << BITS];
        private int freeCount;
        private int next;

        synchronized int add(SimMr mr, boolean remote) {
            int slot;
            if (freeCount > 0) {
                slot = free[--freeCount];
            } else if (next < (1 << BITS)) {
                slot = next++;
            } else {
                throw new IllegalStateException("simulated fabric: more than " + (1 << BITS) + " live registrations");
            }
            int key = ((ThreadLocalRandom.current().nextInt((1 << (32 - BITS)) - 1) + 1) << BITS) | slot;
            if (remote) {
                mr.rkey = key;
            } else {
                mr.lkey = key;
            }
            slots.set(slot, mr);
            return key;
        }

        SimMr get(int key) {
            SimMr mr = slots.get(key & ((1 << BITS) - 1));
            return mr != null && (mr.lkey == key || mr.rkey == key) && mr.valid ? mr : null;
        }

        synchronized void remove(int key, SimMr mr) {
            int slot = key & ((1 << BITS) - 1);
            if (slots.get(slot) == mr) {
                slots.set(slot, null);
                free[freeCount++] = slot;
            }
        }
    }

    void remember(SimQueuePair qp) {
        queuePairs.add(qp);
    }

    void forget(SimQueuePair qp) {
        queuePairs.remove(qp);
    }


    // ================================================================== device, domains, registrations

    private final class SimDevice implements RdmaDevice {
        @Override
        public String name() {
            return "sim0";
        }

        @Override
        public ProtectionDomain allocPd() {
            return new SimPd();
        }

        @Override
        public CompletionQueue createCq(int entries) throws VerbsException {
            if (entries < 1) {
                throw new VerbsException("ibv_create_cq: " + entries + " entries");
            }
            return new SimCompletionQueue(SimFabric.this, entries);
        }
    }

    /** A protection domain: its registrations and the queue pairs that may use them. */
    final class SimPd implements ProtectionDomain {
        private final Set<SimMr> live = ConcurrentHashMap.newKeySet();
        private volatile boolean closed;

        @Override
        public MemoryRegion register(MemorySegment memory, int access) throws VerbsException {
            if (closed) {
                throw new VerbsException("ibv_reg_mr: protection domain is closed");
            }
            if (!memory.isNative()) {
                throw new VerbsException("ibv_reg_mr: only native memory can be registered");
            }
            long len = memory.byteSize();
            if (len <= 0 || len > Verbs.MAX_REGISTRATION_BYTES) {
                throw new VerbsException("ibv_reg_mr: length " + len + " outside 1.." + Verbs.MAX_REGISTRATION_BYTES
                        + " (DiSNi's regMr takes an int length: register larger memory in pieces)");
            }
            int known = Verbs.ACCESS_LOCAL_WRITE | Verbs.ACCESS_REMOTE_WRITE | Verbs.ACCESS_REMOTE_READ;
            if ((access & ~known) != 0) {
                throw new VerbsException("ibv_reg_mr: unknown access flags 0x" + Integer.toHexString(access));
            }
            if ((access & Verbs.ACCESS_REMOTE_WRITE) != 0 && (access & Verbs.ACCESS_LOCAL_WRITE) == 0) {
                throw new VerbsException("ibv_reg_mr: EINVAL: remote write access requires local write access");
            }
            SimMr mr = new SimMr(this, memory, access);
            lkeys.add(mr, false);
            rkeys.add(mr, true);
            live.add(mr);
            stats.registrations.increment();
            stats.liveRegistrations.incrementAndGet();
            stats.liveRegisteredBytes.addAndGet(len);
            return mr;
        }

        void deregistered(SimMr mr) {
            live.remove(mr);
        }

        @Override
        public void close() {
            if (closed) {
                return;
            }
            closed = true;
            if (!live.isEmpty()) {
                throw new IllegalStateException("ibv_dealloc_pd: EBUSY: " + live.size() + " memory registrations are still live");
            }
        }
    }

    /** A registration. */
    final class SimMr implements MemoryRegion {
        final SimPd pd;
        final MemorySegment memory;
        final long address;
        final long length;
        final int access;
        volatile int lkey;
        volatile int rkey;
        volatile boolean valid = true;

        SimMr(SimPd pd, MemorySegment memory, int access) {
            this.pd = pd;
            this.memory = memory;
            this.address = memory.address();
            this.length = memory.byteSize();
            this.access = access;
        }

        @Override
        public long address() {
            return address;
        }

        @Override
        public long length() {
            return length;
        }

        @Override
        public int lkey() {
            return lkey;
        }

        @Override
        public int rkey() {
            return rkey;
        }

        @Override
        public void deregister() {
            if (!valid) {
                return;
            }
            valid = false;
            lkeys.remove(lkey, this);
            rkeys.remove(rkey, this);
            pd.deregistered(this);
            stats.deregistrations.increment();
            stats.liveRegistrations.decrementAndGet();
            stats.liveRegisteredBytes.addAndGet(-length);
        }

        @Override
        public String toString() {
            return "SimMr[0x" + Long.toHexString(address) + "+" + length + ", lkey 0x" + Integer.toHexString(lkey) + ", rkey 0x"
                    + Integer.toHexString(rkey) + "]";
        }
    }

    // ================================================================== connection manager

    /** A listening endpoint: a bounded queue of connection requests. */
    static final class SimServer implements RdmaServer {
        private static final int BACKLOG = 64;
        private final SimFabric fabric;
        private final String host;
        private final int port;
        private final ReentrantLock lock = new ReentrantLock();
        private final Condition changed = lock.newCondition();
        private final java.util.ArrayDeque<SimEndpoint> requests = new java.util.ArrayDeque<>();
        private boolean closed;

        SimServer(SimFabric fabric, String host, int port) {
            this.fabric = fabric;
            this.host = host;
            this.port = port;
        }

        @Override
        public String host() {
            return host;
        }

        @Override
        public int port() {
            return port;
        }

        boolean accepts(String connectHost) {
            return host.equals("0.0.0.0") || host.equals("::") || host.equals(connectHost)
                    || (isLoopback(host) && isLoopback(connectHost));
        }

        private static boolean isLoopback(String h) {
            return h.equals("localhost") || h.startsWith("127.") || h.equals("::1");
        }

        /** Queues a request; false when closed or the backlog is full. */
        boolean offer(SimEndpoint active) {
            lock.lock();
            try {
                if (closed || requests.size() >= BACKLOG) {
                    return false;
                }
                requests.add(active);
                changed.signalAll();
                return true;
            } finally {
                lock.unlock();
            }
        }

        void withdraw(SimEndpoint active) {
            lock.lock();
            try {
                requests.remove(active);
            } finally {
                lock.unlock();
            }
        }

        @Override
        public RdmaEndpoint awaitRequest(long timeoutNs) throws VerbsException {
            lock.lock();
            try {
                long left = timeoutNs;
                while (requests.isEmpty() && !closed && left > 0) {
                    left = changed.awaitNanos(left);
                }
                if (closed) {
                    throw new VerbsException("rdma_get_cm_event: listener " + host + ":" + port + " is closed");
                }
                SimEndpoint active = requests.poll();
                return active == null ? null : new SimEndpoint(fabric, this, active);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new VerbsException("interrupted while waiting for a connection request", e);
            } finally {
                lock.unlock();
            }
        }

        @Override
        public void close() {
            List<SimEndpoint> refused;
            lock.lock();
            try {
                if (closed) {
                    return;
                }
                closed = true;
                refused = new ArrayList<>(requests);
                requests.clear();
                changed.signalAll();
            } finally {
                lock.unlock();
            }
            for (SimEndpoint e : refused) {
                e.rejected("the listener closed");
            }
            fabric.removeServer(this);
        }
    }

    /** One connection-manager id. */
    static final class SimEndpoint implements RdmaEndpoint {
        private enum State { IDLE, CONNECTING, ESTABLISHED, REJECTED, DISCONNECTED, CLOSED }

        private final SimFabric fabric;
        private final SimServer server;     // passive side: the listener it came from
        private final SimEndpoint active;   // passive side: the requesting endpoint
        private final String host;
        private final int port;
        private final ReentrantLock lock = new ReentrantLock();
        private final Condition changed = lock.newCondition();
        private State state = State.IDLE;
        private String rejection;
        private SimQueuePair qp;
        private SimEndpoint peer;
        private volatile byte[] privateData = new byte[0]; // active side: what its connect request carries

        /** Active side. */
        SimEndpoint(SimFabric fabric, String host, int port) {
            this.fabric = fabric;
            this.server = null;
            this.active = null;
            this.host = host;
            this.port = port;
        }

        /** Passive side, for a request from {@code active}. */
        SimEndpoint(SimFabric fabric, SimServer server, SimEndpoint active) {
            this.fabric = fabric;
            this.server = server;
            this.active = active;
            this.host = server.host();
            this.port = server.port();
        }

        @Override
        public RdmaDevice device() {
            return fabric.device;
        }

        @Override
        public QueuePair createQueuePair(ProtectionDomain pd, CompletionQueue cq, QpConfig config) throws VerbsException {
            if (!(pd instanceof SimPd spd) || !(cq instanceof SimCompletionQueue scq)) {
                throw new VerbsException("rdma_create_qp: protection domain or completion queue of another fabric");
            }
            lock.lock();
            try {
                if (qp != null) {
                    throw new VerbsException("rdma_create_qp: the endpoint already has a queue pair");
                }
                qp = new SimQueuePair(fabric, spd, scq, config, port, server != null);
                fabric.remember(qp);
                return qp;
            } finally {
                lock.unlock();
            }
        }

        @Override
        public byte[] privateData() {
            return active == null ? new byte[0] : active.privateData.clone();
        }

        @Override
        public void connect(long timeoutNs, byte[] privateData) throws VerbsException {
            if (privateData.length > Verbs.MAX_CONNECT_PRIVATE_DATA) {
                throw new VerbsException("rdma_connect: EINVAL: " + privateData.length + " bytes of private data, at most "
                        + Verbs.MAX_CONNECT_PRIVATE_DATA);
            }
            this.privateData = privateData.clone();
            Tap tap = fabric.tapOf(port);
            if (tap != null && qp != null) {
                tap.connecting(qp, this.privateData);
            }
            try {
                fabric.gate(port, this.privateData, timeoutNs);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new VerbsException("interrupted while connecting", e);
            }
            SimServer s = fabric.server(port);
            lock.lock();
            try {
                if (qp == null) {
                    throw new VerbsException("rdma_connect: create the queue pair first");
                }
                if (state != State.IDLE) {
                    throw new VerbsException("rdma_connect: endpoint is " + state);
                }
                if (s == null || !s.accepts(host)) {
                    throw new VerbsException("RDMA_CM_EVENT_REJECTED: no listener at " + host + ":" + port + " (connection refused)");
                }
                state = State.CONNECTING;
            } finally {
                lock.unlock();
            }
            if (!s.offer(this)) {
                throw new VerbsException("RDMA_CM_EVENT_REJECTED: the listener at " + host + ":" + port + " is closed or its backlog is full");
            }
            lock.lock();
            try {
                long left = timeoutNs;
                while (state == State.CONNECTING && left > 0) {
                    left = changed.awaitNanos(left);
                }
                if (state == State.ESTABLISHED) {
                    return;
                }
                if (state == State.CONNECTING) {
                    state = State.IDLE;
                    s.withdraw(this);
                    throw new VerbsException("rdma_connect to " + host + ":" + port + ": no answer within "
                            + TimeUnit.NANOSECONDS.toMillis(timeoutNs) + " ms (RDMA_CM_EVENT_UNREACHABLE)");
                }
                throw new VerbsException("RDMA_CM_EVENT_REJECTED by " + host + ":" + port + ": " + rejection);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                s.withdraw(this);
                throw new VerbsException("interrupted while connecting", e);
            } finally {
                lock.unlock();
            }
        }

        /** Active side: the passive side accepted. */
        private boolean established(SimEndpoint passive) {
            lock.lock();
            try {
                if (state != State.CONNECTING) {
                    return false; // timed out meanwhile
                }
                peer = passive;
                state = State.ESTABLISHED;
                changed.signalAll();
                return true;
            } finally {
                lock.unlock();
            }
        }

        private void rejected(String why) {
            lock.lock();
            try {
                if (state == State.CONNECTING) {
                    state = State.REJECTED;
                    rejection = why;
                    changed.signalAll();
                }
            } finally {
                lock.unlock();
            }
        }

        @Override
        public void accept() throws VerbsException {
            SimQueuePair mine;
            lock.lock();
            try {
                if (active == null) {
                    throw new VerbsException("rdma_accept on an active endpoint");
                }
                if (qp == null) {
                    throw new VerbsException("rdma_accept: create the queue pair first");
                }
                if (state != State.IDLE) {
                    throw new VerbsException("rdma_accept: endpoint is " + state);
                }
                mine = qp;
            } finally {
                lock.unlock();
            }
            SimQueuePair theirs = active.queuePair();
            if (theirs == null) {
                throw new VerbsException("rdma_accept: the requester has no queue pair");
            }
            mine.connectTo(theirs);
            theirs.connectTo(mine);
            if (!active.established(this)) {
                mine.toError("the requester gave up before the accept");
                throw new VerbsException("rdma_accept: the requester " + peerAddress() + " gave up (connect timeout)");
            }
            lock.lock();
            try {
                peer = active;
                state = State.ESTABLISHED;
            } finally {
                lock.unlock();
            }
        }

        private SimQueuePair queuePair() {
            lock.lock();
            try {
                return qp;
            } finally {
                lock.unlock();
            }
        }

        @Override
        public void reject() {
            if (active != null) {
                active.rejected("rejected by the listener");
            }
        }

        @Override
        public void disconnect() {
            SimQueuePair mine;
            SimEndpoint other;
            lock.lock();
            try {
                if (state != State.ESTABLISHED) {
                    if (qp != null) {
                        qp.toError("disconnected locally");
                    }
                    return;
                }
                state = State.DISCONNECTED;
                mine = qp;
                other = peer;
            } finally {
                lock.unlock();
            }
            mine.toError("disconnected locally");
            if (other != null) {
                other.peerDisconnected();
            }
        }

        private void peerDisconnected() {
            SimQueuePair mine;
            lock.lock();
            try {
                if (state == State.ESTABLISHED) {
                    state = State.DISCONNECTED;
                }
                mine = qp;
            } finally {
                lock.unlock();
            }
            if (mine != null) {
                mine.toError("disconnected by the peer (RDMA_CM_EVENT_DISCONNECTED)");
            }
        }

        @Override
        public String peerAddress() {
            return active != null ? "sim:" + active.host + "->" + host + ":" + port : host + ":" + port;
        }

        @Override
        public void close() {
            disconnect();
            SimQueuePair mine;
            lock.lock();
            try {
                if (state == State.CLOSED) {
                    return;
                }
                state = State.CLOSED;
                mine = qp;
            } finally {
                lock.unlock();
            }
            if (mine != null) {
                mine.destroy();
            }
        }

        @Override
        public String toString() {
            return "SimEndpoint[" + peerAddress() + ", " + state + "]";
        }
    }
}
