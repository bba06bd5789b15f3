package io.pagewire.transport.rdma.disni;

import com.ibm.disni.verbs.IbvCQ;
import com.ibm.disni.verbs.IbvCompChannel;
import com.ibm.disni.verbs.IbvContext;
import com.ibm.disni.verbs.IbvMr;
import com.ibm.disni.verbs.IbvPd;
import com.ibm.disni.verbs.IbvQP;
import com.ibm.disni.verbs.IbvQPInitAttr;
import com.ibm.disni.verbs.IbvRecvWR;
import com.ibm.disni.verbs.IbvSendWR;
import com.ibm.disni.verbs.IbvSge;
import com.ibm.disni.verbs.IbvWC;
import com.ibm.disni.verbs.RdmaCm;
import com.ibm.disni.verbs.RdmaCmEvent;
import com.ibm.disni.verbs.RdmaCmId;
import com.ibm.disni.verbs.RdmaConnParam;
import com.ibm.disni.verbs.RdmaEventChannel;
import com.ibm.disni.verbs.SVCPollCq;
import com.ibm.disni.verbs.SVCPostRecv;
import com.ibm.disni.verbs.SVCPostSend;
import com.ibm.disni.verbs.SVCRegMr;
import com.ibm.disni.verbs.SVCReqNotify;
import io.pagewire.transport.rdma.verbs.CompletionQueue;
import io.pagewire.transport.rdma.verbs.MemoryRegion;
import io.pagewire.transport.rdma.verbs.ProtectionDomain;
import io.pagewire.transport.rdma.verbs.QpConfig;
import io.pagewire.transport.rdma.verbs.QueuePair;
import io.pagewire.transport.rdma.verbs.RdmaDevice;
import io.pagewire.transport.rdma.verbs.RdmaEndpoint;
import io.pagewire.transport.rdma.verbs.RdmaFabric;
import io.pagewire.transport.rdma.verbs.RdmaServer;
import io.pagewire.transport.rdma.verbs.SendBatch;
import io.pagewire.transport.rdma.verbs.Verbs;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.rdma.verbs.WorkCompletions;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.net.InetSocketAddress;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.IdentityHashMap;
import java.util.LinkedList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * The verbs port over DiSNi 2.1 (libdisni, libibverbs, librdmacm): {@code rdma_cm} for
 * connections, RC queue pairs, one completion channel per completion queue. Loaded by name from
 * {@code RdmaTransportProvider} only when the {@code disni} fabric is used; the only class of
 * pagewire that links against DiSNi.
 *
 * <p>DiSNi's stateful verb calls are prepared once and re-executed: a send of <i>k</i> RDMA WRITEs
 * and one SEND reuses the prepared {@code ibv_post_send} of that shape with its work-request
 * fields rewritten in place; each receive buffer has its prepared {@code ibv_post_recv}; polling
 * and arming reuse one call each. DiSNi 2.1 has no asynchronous-event API: a peer's access
 * violation shows as the queue pair's flushed receives (and the peer's disconnect).
 *
 * <p>Not verified on RDMA hardware from this project's machines (which have none); see docs/rdma.md.
 */
public final class DisniFabric implements RdmaFabric {
    private static final int BACKLOG = 64;

    /** Created by name; opening the connection manager happens on first use. */
    public DisniFabric() {
    }

    @Override
    public String name() {
        return "disni";
    }

    static VerbsException fail(String what, Throwable e) {
        return new VerbsException(what + " failed: " + e.getMessage(), e);
    }

    private static int ms(long ns) {
        return (int) Math.max(1, Math.min(Integer.MAX_VALUE, TimeUnit.NANOSECONDS.toMillis(ns)));
    }

    @Override
    public RdmaServer listen(String host, int port) throws VerbsException {
        RdmaEventChannel ch = null;
        try {
            ch = RdmaEventChannel.createEventChannel();
            RdmaCmId id = ch.createId(RdmaCm.RDMA_PS_TCP);
            id.bindAddr(new InetSocketAddress(host, port));
            id.listen(BACKLOG);
            return new Server(ch, id, host);
        } catch (IOException e) {
            if (ch != null) {
                destroy(ch);
            }
            throw fail("rdma_bind_addr/rdma_listen on " + host + ":" + port, e);
        }
    }

    @Override
    public RdmaEndpoint resolve(String host, int port, long timeoutNs) throws VerbsException {
        RdmaEventChannel ch = null;
        try {
            ch = RdmaEventChannel.createEventChannel();
            RdmaCmId id = ch.createId(RdmaCm.RDMA_PS_TCP);
            id.resolveAddr(null, new InetSocketAddress(host, port), ms(timeoutNs));
            expect(ch, RdmaCmEvent.EventType.RDMA_CM_EVENT_ADDR_RESOLVED, timeoutNs, "rdma_resolve_addr " + host + ":" + port);
            id.resolveRoute(ms(timeoutNs));
            expect(ch, RdmaCmEvent.EventType.RDMA_CM_EVENT_ROUTE_RESOLVED, timeoutNs, "rdma_resolve_route " + host + ":" + port);
            return new Endpoint(ch, id, null, host + ":" + port);
        } catch (IOException e) {
            if (ch != null) {
                destroy(ch);
            }
            throw e instanceof VerbsException ve ? ve : fail("resolving " + host + ":" + port, e);
        }
    }

    /** Waits for one connection-manager event on an active endpoint's own channel. */
    private static void expect(RdmaEventChannel ch, RdmaCmEvent.EventType expected, long timeoutNs, String what) throws IOException {
        RdmaCmEvent ev = ch.getCmEvent(ms(timeoutNs));
        if (ev == null) {
            throw new VerbsException(what + ": no connection-manager event within " + ms(timeoutNs) + " ms");
        }
        int type = ev.getEvent();
        int status = ev.getStatus();
        ev.ackEvent();
        if (type != expected.ordinal()) {
            throw new VerbsException(what + ": " + eventName(type) + " (status " + status + ") instead of " + expected);
        }
    }

    private static String eventName(int type) {
        RdmaCmEvent.EventType[] all = RdmaCmEvent.EventType.values();
        return type >= 0 && type < all.length ? all[type].name() : "event " + type;
    }

    private static void destroy(RdmaEventChannel ch) {
        try {
            ch.destroyEventChannel();
        } catch (IOException e) {
            System.getLogger(DisniFabric.class.getName()).log(System.Logger.Level.DEBUG, "rdma_destroy_event_channel: " + e.getMessage());
        }
    }

    // ================================================================== listening

    /** A listening id; its event channel also carries the events of the ids it accepted, dispatched by one thread. */
    private static final class Server implements RdmaServer {
        private final RdmaEventChannel ch;
        private final RdmaCmId id;
        private final String host;
        private final ArrayDeque<Request> requests = new ArrayDeque<>();
        private final Map<RdmaCmId, Endpoint> accepted = new IdentityHashMap<>();
        private final Thread dispatcher;
        private volatile boolean closed;
        private IOException failure;

        Server(RdmaEventChannel ch, RdmaCmId id, String host) {
            this.ch = ch;
            this.id = id;
            this.host = host;
            this.dispatcher = Thread.ofPlatform().daemon().name("pagewire-disni-cm-listen").start(this::dispatch);
        }

        private void dispatch() {
            try {
                while (!closed) {
                    RdmaCmEvent ev = ch.getCmEvent(200);
                    if (ev == null) {
                        continue;
                    }
                    int type = ev.getEvent();
                    RdmaCmId conn = ev.getConnIdPriv();
                    // the request's private data lives in the event: copy it before the event is acknowledged
                    byte[] privateData = type == RdmaCmEvent.EventType.RDMA_CM_EVENT_CONNECT_REQUEST.ordinal() ? privateData(ev) : null;
                    ev.ackEvent();
                    if (type == RdmaCmEvent.EventType.RDMA_CM_EVENT_CONNECT_REQUEST.ordinal()) {
                        synchronized (this) {
                            if (requests.size() < BACKLOG) {
                                requests.add(new Request(conn, privateData));
                                notifyAll();
                                continue;
                            }
                        }
                        conn.destroyId(); // backlog full: the requester sees a rejection
                    } else if (type == RdmaCmEvent.EventType.RDMA_CM_EVENT_DISCONNECTED.ordinal()
                            || type == RdmaCmEvent.EventType.RDMA_CM_EVENT_DEVICE_REMOVAL.ordinal()) {
                        Endpoint e;
                        synchronized (this) {
                            e = accepted.get(conn);
                        }
                        if (e != null) {
                            e.peerGone(eventName(type));
                        }
                    }
                }
            } catch (IOException e) {
                synchronized (this) {
                    failure = e;
                    notifyAll();
                }
            }
        }

        @Override
        public String host() {
            return host;
        }

        @Override
        public int port() {
            try {
                return ((InetSocketAddress) id.getSource()).getPort();
            } catch (IOException e) {
                throw new IllegalStateException("rdma_get_src_port failed: " + e.getMessage(), e);
            }
        }

        @Override
        public synchronized RdmaEndpoint awaitRequest(long timeoutNs) throws VerbsException {
            long deadline = System.nanoTime() + timeoutNs;
            while (requests.isEmpty() && !closed && failure == null) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return null;
                }
                try {
                    TimeUnit.NANOSECONDS.timedWait(this, left);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new VerbsException("interrupted while waiting for a connection request", e);
                }
            }
            if (failure != null) {
                throw fail("rdma_get_cm_event on the listener", failure);
            }
            if (closed) {
                throw new VerbsException("the listener is closed");
            }
            Request r = requests.poll();
            RdmaCmId conn = r.id();
            Endpoint e = new Endpoint(null, conn, this, host);
            e.privateData = r.privateData();
            accepted.put(conn, e);
            return e;
        }

        synchronized void forget(RdmaCmId conn) {
            accepted.remove(conn);
        }

        @Override
        public void close() {
            synchronized (this) {
                if (closed) {
                    return;
                }
                closed = true;
                notifyAll();
            }
            try {
                dispatcher.join(TimeUnit.SECONDS.toMillis(2));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            try {
                id.destroyId();
            } catch (IOException e) {
                System.getLogger(DisniFabric.class.getName()).log(System.Logger.Level.DEBUG, "rdma_destroy_id: " + e.getMessage());
            }
            destroy(ch);
        }
    }

    // ================================================================== endpoints

    /** An rdma_cm id: active (own event channel and watcher thread) or accepted (events via its server). */
    /** A connect request waiting for {@code awaitRequest}, with the private data it carried. */
    private record Request(RdmaCmId id, byte[] privateData) {
    }

    /** @return a copy of a connect request's private data ({@code event->param.conn.private_data}), empty when none */
    private static byte[] privateData(RdmaCmEvent ev) {
        RdmaConnParam p = ev.getConn();
        if (p == null || p.getPrivate_data() == 0 || p.getPrivate_data_len() == 0) {
            return new byte[0];
        }
        int len = Math.min(Byte.toUnsignedInt(p.getPrivate_data_len()), Verbs.MAX_CONNECT_PRIVATE_DATA);
        return MemorySegment.ofAddress(p.getPrivate_data()).reinterpret(len).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE);
    }

    private static final class Endpoint implements RdmaEndpoint {
        private final RdmaEventChannel ownChannel;
        private final RdmaCmId id;
        private final Server server;
        private final String peer;
        private Qp qp;
        private Thread watcher;
        private volatile boolean connected;
        private volatile boolean closed;
        private byte[] privateData = new byte[0]; // passive side: the connect request's

        Endpoint(RdmaEventChannel ownChannel, RdmaCmId id, Server server, String peer) {
            this.ownChannel = ownChannel;
            this.id = id;
            this.server = server;
            this.peer = peer;
        }

        @Override
        public RdmaDevice device() {
            try {
                return new Device(id.getVerbs());
            } catch (IOException e) {
                throw new IllegalStateException("rdma_cm id has no device: " + e.getMessage(), e);
            }
        }

        @Override
        public QueuePair createQueuePair(ProtectionDomain pd, CompletionQueue cq, QpConfig config) throws VerbsException {
            if (!(pd instanceof Pd dpd) || !(cq instanceof Cq dcq)) {
                throw new VerbsException("rdma_create_qp: protection domain or completion queue of another fabric");
            }
            IbvQPInitAttr attr = new IbvQPInitAttr();
            attr.cap().setMax_send_wr(config.sendDepth());
            attr.cap().setMax_recv_wr(config.recvDepth());
            attr.cap().setMax_send_sge(1);
            attr.cap().setMax_recv_sge(1);
            attr.cap().setMax_inline_data(0);
            attr.setQp_type(IbvQP.IBV_QPT_RC);
            attr.setSend_cq(dcq.cq);
            attr.setRecv_cq(dcq.cq);
            try {
                qp = new Qp(id.createQP(dpd.pd, attr), config);
                return qp;
            } catch (IOException e) {
                throw fail("rdma_create_qp (" + config + ")", e);
            }
        }

        private RdmaConnParam param() throws IOException {
            RdmaConnParam p = new RdmaConnParam();
            p.setInitiator_depth((byte) 1);
            p.setResponder_resources((byte) 1);
            p.setRetry_count((byte) 7);
            p.setRnr_retry_count((byte) (qp == null ? 0 : qp.config.rnrRetry()));
            return p;
        }

        @Override
        public byte[] privateData() {
            return privateData.clone();
        }

        @Override
        public void connect(long timeoutNs, byte[] privateData) throws VerbsException {
            if (privateData.length > Verbs.MAX_CONNECT_PRIVATE_DATA) {
                throw new VerbsException("rdma_connect: " + privateData.length + " bytes of private data, at most " + Verbs.MAX_CONNECT_PRIVATE_DATA);
            }
            try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
                RdmaConnParam p = param();
                if (privateData.length > 0) {
                    MemorySegment data = arena.allocate(privateData.length);
                    MemorySegment.copy(privateData, 0, data, java.lang.foreign.ValueLayout.JAVA_BYTE, 0, privateData.length);
                    p.setPrivate_data(data.address()); // rdma_connect copies it into the REQ
                    p.setPrivate_data_len((byte) privateData.length);
                }
                id.connect(p);
                expect(ownChannel, RdmaCmEvent.EventType.RDMA_CM_EVENT_ESTABLISHED, timeoutNs, "rdma_connect to " + peer);
            } catch (IOException e) {
                throw e instanceof VerbsException ve ? ve : fail("rdma_connect to " + peer, e);
            }
            connected = true;
            watcher = Thread.ofPlatform().daemon().name("pagewire-disni-cm").start(this::watch);
        }

        /** Active side: waits for the peer's disconnect on the endpoint's own channel. */
        private void watch() {
            try {
                while (!closed) {
                    RdmaCmEvent ev = ownChannel.getCmEvent(200);
                    if (ev == null) {
                        continue;
                    }
                    int type = ev.getEvent();
                    ev.ackEvent();
                    if (type == RdmaCmEvent.EventType.RDMA_CM_EVENT_DISCONNECTED.ordinal()
                            || type == RdmaCmEvent.EventType.RDMA_CM_EVENT_DEVICE_REMOVAL.ordinal()) {
                        peerGone(eventName(type));
                    }
                }
            } catch (IOException e) {
                if (!closed) {
                    peerGone("rdma_get_cm_event failed: " + e.getMessage());
                }
            }
        }

        /** The peer disconnected: move our queue pair to the error state so its work is flushed and the poller wakes. */
        void peerGone(String why) {
            if (qp != null) {
                qp.asyncError = "disconnected by the peer (" + why + ")";
            }
            disconnect();
        }

        @Override
        public void accept() throws VerbsException {
            try {
                id.accept(param());
            } catch (IOException e) {
                throw fail("rdma_accept from " + peer, e);
            }
            connected = true;
        }

        @Override
        public void reject() {
            // DiSNi 2.1 has no rdma_reject: destroying the id refuses the request.
            close();
        }

        @Override
        public synchronized void disconnect() {
            if (!connected) {
                return;
            }
            connected = false;
            try {
                id.disconnect(); // rdma_disconnect moves the queue pair to the error state: everything outstanding is flushed
            } catch (IOException e) {
                if (qp != null && qp.asyncError == null) {
                    qp.asyncError = "rdma_disconnect failed: " + e.getMessage();
                }
            }
        }

        @Override
        public String peerAddress() {
            return peer;
        }

        @Override
        public void close() {
            synchronized (this) {
                if (closed) {
                    return;
                }
                closed = true;
            }
            disconnect();
            if (watcher != null) {
                try {
                    watcher.join(TimeUnit.SECONDS.toMillis(2));
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
            try {
                if (qp != null) {
                    qp.freeCalls();
                    id.destroyQP();
                }
                id.destroyId();
            } catch (IOException e) {
                System.getLogger(DisniFabric.class.getName()).log(System.Logger.Level.DEBUG, "destroying rdma_cm id: " + e.getMessage());
            }
            if (server != null) {
                server.forget(id);
            }
            if (ownChannel != null) {
                destroy(ownChannel);
            }
        }

        @Override
        public String toString() {
            return "DisniEndpoint[" + peer + "]";
        }
    }

    // ================================================================== device, domain, registrations, queues

    private record Device(IbvContext context) implements RdmaDevice {
        @Override
        public String name() {
            try {
                return "ibv_context/" + context.getCmd_fd();
            } catch (IOException e) {
                return "ibv_context@" + System.identityHashCode(context);
            }
        }

        @Override
        public ProtectionDomain allocPd() throws VerbsException {
            try {
                return new Pd(context.allocPd());
            } catch (IOException e) {
                throw fail("ibv_alloc_pd", e);
            }
        }

        @Override
        public CompletionQueue createCq(int entries) throws VerbsException {
            try {
                IbvCompChannel channel = context.createCompChannel();
                IbvCQ cq = context.createCQ(channel, entries, 0);
                return new Cq(channel, cq);
            } catch (IOException e) {
                throw fail("ibv_create_cq (" + entries + " entries)", e);
            }
        }
    }

    private static final class Pd implements ProtectionDomain {
        final IbvPd pd;

        Pd(IbvPd pd) {
            this.pd = pd;
        }

        @Override
        public MemoryRegion register(MemorySegment memory, int access) throws VerbsException {
            long len = memory.byteSize();
            if (!memory.isNative() || len <= 0 || len > Verbs.MAX_REGISTRATION_BYTES) {
                throw new VerbsException("ibv_reg_mr: " + len + " bytes of " + (memory.isNative() ? "native" : "heap")
                        + " memory; DiSNi registers 1.." + Verbs.MAX_REGISTRATION_BYTES + " bytes of native memory at a time");
            }
            int flags = 0;
            if ((access & Verbs.ACCESS_LOCAL_WRITE) != 0) {
                flags |= IbvMr.IBV_ACCESS_LOCAL_WRITE;
            }
            if ((access & Verbs.ACCESS_REMOTE_WRITE) != 0) {
                flags |= IbvMr.IBV_ACCESS_REMOTE_WRITE;
            }
            if ((access & Verbs.ACCESS_REMOTE_READ) != 0) {
                flags |= IbvMr.IBV_ACCESS_REMOTE_READ;
            }
            try {
                SVCRegMr call = pd.regMr(memory.address(), (int) len, flags);
                call.execute();
                IbvMr mr = call.getMr();
                call.free();
                return new Mr(mr);
            } catch (IOException e) {
                throw fail("ibv_reg_mr of " + len + " bytes at 0x" + Long.toHexString(memory.address()), e);
            }
        }

        @Override
        public void close() {
            try {
                pd.deallocPd();
            } catch (Exception e) {
                throw new IllegalStateException("ibv_dealloc_pd failed: " + e.getMessage(), e);
            }
        }
    }

    private static final class Mr implements MemoryRegion {
        private final IbvMr mr;
        private boolean deregistered;

        Mr(IbvMr mr) {
            this.mr = mr;
        }

        @Override
        public long address() {
            return mr.getAddr();
        }

        @Override
        public long length() {
            return Integer.toUnsignedLong(mr.getLength());
        }

        @Override
        public int lkey() {
            return mr.getLkey();
        }

        @Override
        public int rkey() {
            return mr.getRkey();
        }

        @Override
        public synchronized void deregister() {
            if (deregistered) {
                return;
            }
            deregistered = true;
            try {
                mr.deregMr().execute().free();
            } catch (IOException e) {
                throw new IllegalStateException("ibv_dereg_mr failed: " + e.getMessage(), e);
            }
        }
    }

    private static final class Cq implements CompletionQueue {
        private static final int BATCH = 64;
        final IbvCompChannel channel;
        final IbvCQ cq;
        private final IbvWC[] wcs = new IbvWC[BATCH];
        private final SVCPollCq poll;
        private final SVCReqNotify notify;

        Cq(IbvCompChannel channel, IbvCQ cq) throws IOException {
            this.channel = channel;
            this.cq = cq;
            for (int i = 0; i < BATCH; i++) {
                wcs[i] = new IbvWC();
            }
            this.poll = cq.poll(wcs, BATCH);
            this.notify = cq.reqNotification(false);
        }

        @Override
        public int poll(WorkCompletions into) throws VerbsException {
            into.reset();
            try {
                poll.execute();
            } catch (IOException e) {
                throw fail("ibv_poll_cq", e);
            }
            int n = Math.min(poll.getPolls(), into.capacity());
            for (int i = 0; i < n; i++) {
                IbvWC wc = wcs[i];
                into.add(wc.getWr_id(), wc.getStatus(), wc.getOpcode(), wc.getByte_len());
            }
            return n;
        }

        @Override
        public void requestNotify() throws VerbsException {
            try {
                notify.execute();
            } catch (IOException e) {
                throw fail("ibv_req_notify_cq", e);
            }
        }

        @Override
        public boolean awaitEvent(long timeoutNs) throws VerbsException {
            try {
                boolean got = channel.getCqEvent(cq, ms(timeoutNs));
                if (got) {
                    cq.ackEvents(1);
                }
                return got;
            } catch (IOException e) {
                throw fail("ibv_get_cq_event", e);
            }
        }

        @Override
        public void wakeup() {
            // A completion channel cannot be woken from Java; pollers wait in slices of at most 100 ms.
        }

        @Override
        public void close() {
            try {
                poll.free();
                notify.free();
                cq.destroyCQ();
                channel.destroyCompChannel();
            } catch (IOException e) {
                System.getLogger(DisniFabric.class.getName()).log(System.Logger.Level.DEBUG, "destroying a completion queue: " + e.getMessage());
            }
        }
    }

    private static final class Qp implements QueuePair {
        final IbvQP qp;
        final QpConfig config;
        volatile String asyncError;
        /** Prepared posts by shape: index 2k+1 = k RDMA WRITEs then one SEND, 2k = k RDMA WRITEs. */
        private final SVCPostSend[] shapes = new SVCPostSend[2 * 65];
        private final long[] recvIds = new long[4096];
        private final long[] recvAddresses = new long[4096];
        private final int[] recvLengths = new int[4096];
        private final int[] recvKeys = new int[4096];
        private final SVCPostRecv[] recvCalls = new SVCPostRecv[4096];

        Qp(IbvQP qp, QpConfig config) {
            this.qp = qp;
            this.config = config;
        }

        private static int shape(SendBatch b) {
            int n = b.count();
            int writes = 0;
            for (int i = 0; i < n; i++) {
                int op = b.opcode(i);
                if (op == Verbs.WR_RDMA_WRITE && writes == i) {
                    writes++;
                } else if (!(op == Verbs.WR_SEND && i == n - 1)) {
                    return -1;
                }
            }
            if (writes > 64) {
                return -1;
            }
            return 2 * writes + (writes < n ? 1 : 0);
        }

        private SVCPostSend prepare(SendBatch b) throws IOException {
            List<IbvSendWR> wrs = new ArrayList<>(b.count());
            for (int i = 0; i < b.count(); i++) {
                IbvSendWR wr = new IbvSendWR();
                wr.setOpcode(b.opcode(i) == Verbs.WR_RDMA_WRITE ? IbvSendWR.IBV_WR_RDMA_WRITE
                        : b.opcode(i) == Verbs.WR_RDMA_READ ? IbvSendWR.IBV_WR_RDMA_READ : IbvSendWR.IBV_WR_SEND);
                LinkedList<IbvSge> sges = new LinkedList<>();
                sges.add(new IbvSge());
                wr.setSg_list(sges);
                wr.setNum_sge(1);
                wrs.add(wr);
            }
            return qp.postSend(wrs, null);
        }

        @Override
        public synchronized void postSend(SendBatch b) throws VerbsException {
            try {
                int s = shape(b);
                SVCPostSend call;
                boolean cached = s >= 0;
                if (cached) {
                    call = shapes[s];
                    if (call == null) {
                        call = prepare(b);
                        shapes[s] = call;
                    }
                } else {
                    call = prepare(b);
                }
                for (int i = 0; i < b.count(); i++) {
                    SVCPostSend.SendWRMod wr = call.getWrMod(i);
                    wr.setWr_id(b.wrId(i));
                    wr.setSend_flags((b.flags(i) & Verbs.SEND_SIGNALED) != 0 ? IbvSendWR.IBV_SEND_SIGNALED : 0);
                    SVCPostSend.SgeMod sge = wr.getSgeMod(0);
                    sge.setAddr(b.localAddress(i));
                    sge.setLength(b.length(i));
                    sge.setLkey(b.lkey(i));
                    if (b.opcode(i) != Verbs.WR_SEND) {
                        wr.getRdmaMod().setRemote_addr(b.remoteAddress(i));
                        wr.getRdmaMod().setRkey(b.rkey(i));
                    }
                }
                call.execute();
                if (!cached) {
                    call.free();
                }
            } catch (IOException e) {
                throw fail("ibv_post_send of " + b.count() + " work requests", e);
            }
        }

        @Override
        public synchronized void postRecv(long wrId, long address, int length, int lkey) throws VerbsException {
            try {
                int slot = (int) (wrId & (recvCalls.length - 1));
                SVCPostRecv call = recvCalls[slot];
                // DiSNi cannot rewrite a prepared receive's buffer: one prepared call per (id, buffer), re-executed on every repost.
                if (call == null || recvIds[slot] != wrId || recvAddresses[slot] != address || recvLengths[slot] != length || recvKeys[slot] != lkey) {
                    if (call != null) {
                        call.free();
                    }
                    IbvRecvWR wr = new IbvRecvWR();
                    wr.setWr_id(wrId);
                    LinkedList<IbvSge> sges = new LinkedList<>();
                    IbvSge sge = new IbvSge();
                    sge.setAddr(address);
                    sge.setLength(length);
                    sge.setLkey(lkey);
                    sges.add(sge);
                    wr.setSg_list(sges);
                    wr.setNum_sge(1);
                    List<IbvRecvWR> list = new ArrayList<>(1);
                    list.add(wr);
                    call = qp.postRecv(list, null);
                    recvCalls[slot] = call;
                    recvIds[slot] = wrId;
                    recvAddresses[slot] = address;
                    recvLengths[slot] = length;
                    recvKeys[slot] = lkey;
                }
                call.execute();
            } catch (IOException e) {
                throw fail("ibv_post_recv", e);
            }
        }

        synchronized void freeCalls() {
            for (SVCPostSend c : shapes) {
                if (c != null) {
                    c.free();
                }
            }
            for (SVCPostRecv c : recvCalls) {
                if (c != null) {
                    c.free();
                }
            }
        }

        @Override
        public String asyncError() {
            return asyncError;
        }
    }
}
