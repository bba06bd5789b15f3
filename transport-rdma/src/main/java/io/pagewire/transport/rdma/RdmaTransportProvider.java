package io.pagewire.transport.rdma;

import io.pagewire.transport.rdma.disni.DisniProbe;
import io.pagewire.transport.rdma.verbs.ProtectionDomain;
import io.pagewire.transport.rdma.verbs.RdmaEndpoint;
import io.pagewire.transport.rdma.verbs.RdmaFabric;
import io.pagewire.transport.rdma.verbs.VerbsException;
import io.pagewire.transport.spi.Capability;
import io.pagewire.transport.spi.Connection;
import io.pagewire.transport.spi.Listener;
import io.pagewire.transport.spi.PeerText;
import io.pagewire.transport.spi.RamLayout;
import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportContext;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportProvider;
import io.pagewire.transport.spi.TransportUri;
import io.pagewire.transport.spi.kit.AuthExchange;
import io.pagewire.transport.spi.kit.Handshakes;
import io.pagewire.transport.spi.wire.FrameType;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.WireException;

import java.lang.foreign.MemorySegment;
import java.util.EnumSet;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * {@code rdma://host:port?pin-all=true|false&...}: the RDMA transport. See {@code docs/rdma.md}.
 *
 * <p>The fabric is chosen by the system property {@value #FABRIC_PROPERTY}: {@code disni}
 * (default: real RDMA through DiSNi and libibverbs) or {@code simulated} (the in-process
 * simulated fabric, both ends in one JVM: a test fixture in this module's test-jar, for tests and
 * benchmarks, never in the main artifact). Both are loaded by name only when used, so this class
 * works without DiSNi's jar or native library.
 */
public final class RdmaTransportProvider implements TransportProvider {
    /** System property selecting the fabric: {@code disni} or {@code simulated}. */
    public static final String FABRIC_PROPERTY = "pagewire.rdma.fabric";
    private static final String DISNI_FABRIC = "io.pagewire.transport.rdma.disni.DisniFabric";
    private static final String SIMULATED_FABRIC = "io.pagewire.transport.rdma.sim.SimFabric";

    private final String fabricName;

    /** The provider the service loader creates: fabric from {@value #FABRIC_PROPERTY}. */
    public RdmaTransportProvider() {
        this(System.getProperty(FABRIC_PROPERTY, "disni").strip());
    }

    /** @param fabricName {@code disni} or {@code simulated} */
    public RdmaTransportProvider(String fabricName) {
        this.fabricName = fabricName;
    }

    @Override
    public String scheme() {
        return "rdma";
    }

    @Override
    public Map<String, String> options() {
        return RdmaOptions.DESCRIPTIONS;
    }

    @Override
    public Set<Capability> capabilities() {
        return EnumSet.of(Capability.ONE_SIDED_PLACEMENT, Capability.MEMORY_REGISTRATION, Capability.SEPARATE_URGENT_PATH,
                Capability.ZERO_COPY_SEND, Capability.ZERO_COPY_RECEIVE, Capability.DATA_DIGEST);
    }

    @Override
    public String unavailabilityCause() {
        return switch (fabricName) {
            case "simulated" -> simulatedFabricPresent() ? null : "the simulated fabric (" + SIMULATED_FABRIC + ") is a test fixture:"
                    + " put transport-rdma's test-jar (classifier tests) on the class path";
            case "disni" -> DisniProbe.unavailabilityCause();
            default -> "system property " + FABRIC_PROPERTY + "=" + fabricName + " names no fabric; expected disni (real RDMA, the default) or"
                    + " simulated (in-process, for tests)";
        };
    }

    /** @return the fabric this provider runs over */
    RdmaFabric fabric() {
        String cause = unavailabilityCause();
        if (cause != null) {
            throw new TransportException(Kind.UNAVAILABLE, "rdma: transport unavailable here: " + cause);
        }
        try {
            if (fabricName.equals("simulated")) {
                return (RdmaFabric) Class.forName(SIMULATED_FABRIC).getMethod("instance").invoke(null);
            }
            // By name: DiSNi's classes are linked only from here on.
            return (RdmaFabric) Class.forName(DISNI_FABRIC).getConstructor().newInstance();
        } catch (ReflectiveOperationException | LinkageError e) {
            Throwable c = e.getCause() != null ? e.getCause() : e;
            throw new TransportException(Kind.UNAVAILABLE, "rdma: the " + fabricName + " fabric could not be started: " + c, c);
        }
    }

    private static boolean simulatedFabricPresent() {
        try {
            Class.forName(SIMULATED_FABRIC, false, RdmaTransportProvider.class.getClassLoader());
            return true;
        } catch (ClassNotFoundException e) {
            return false;
        }
    }

    @Override
    public Listener listen(TransportUri uri, TransportContext context) {
        RdmaOptions options = RdmaOptions.parse(uri);
        uri.requirePort();
        options.check(uri, context.layout());
        return new RdmaListener(fabric(), uri, options, context);
    }

    @Override
    public Connection connect(TransportUri uri, TransportContext context) {
        RdmaOptions o = RdmaOptions.parse(uri);
        String host = uri.requireHost();
        int port = uri.requirePort();
        if (port == 0) {
            throw new TransportException(Kind.INVALID_URI, "cannot connect to port 0 in '" + uri.text() + "'; give the destination's port");
        }
        RamLayout layout = context.layout();
        o.check(uri, layout);
        Hello hello = Handshakes.hello(context, uri.text(), "batch-bytes", o.dataDigest() ? Hello.FLAG_DATA_DIGEST : 0, 1, o.batchBytes());
        long sessionId = hello.sessionId();
        if (hello.encodedLength() > Protocol.MAX_HANDSHAKE_PAYLOAD) {
            throw new TransportException(Kind.INVALID_CONFIG, "the RAM layout needs a " + hello.encodedLength() + "-byte HELLO, over rdma://'s "
                    + Protocol.MAX_HANDSHAKE_PAYLOAD + "-byte first message; use fewer regions or shorter names");
        }
        RdmaFabric fabric = fabric();
        long deadline = System.nanoTime() + context.connectTimeoutNs();
        int txStaging = o.dataDigest() ? o.batchBytes() : 0;
        int txSlots = o.queueDepth() + 8;
        ProtectionDomain pd = null;
        Channel urgent = null;
        Channel background = null;
        LocalRam localRam = null;
        String step = "resolve " + host + ":" + port;
        try {
            RdmaEndpoint ue = fabric.resolve(host, port, context.connectTimeoutNs());
            try {
                pd = ue.device().allocPd();
            } catch (VerbsException e) {
                ue.close();
                throw e;
            }
            urgent = new Channel("urgent", ue, pd, o.queueDepth(), txSlots, true, txStaging, null);
            step = "connect the urgent queue pair";
            ue.connect(left(deadline), new Protocol.ConnectRequest(true, sessionId).encode()); // claims a protection domain for the session
            step = "register the source's RAM";
            localRam = new LocalRam(layout, pd, o);
            AuthExchange.Result auth = null;
            Message m;
            if (context.authentication() == null) {
                m = urgent.begin();
                Handshake.hello(m, hello, o.queueDepth());
                urgent.post(m);
            } else {
                step = "authenticate";
                auth = authenticate(context, hello, urgent, o.queueDepth(), deadline, uri.text());
            }
            step = "resolve the background queue pair";
            RdmaEndpoint be = fabric.resolve(host, port, left(deadline));
            if (!be.device().name().equals(ue.device().name())) {
                be.close();
                throw new VerbsException("the background queue pair resolved to device " + be.device().name() + ", the urgent one to "
                        + ue.device().name() + "; both must use one device");
            }
            background = new Channel("background", be, pd, o.queueDepth(), txSlots, false, txStaging, null);
            step = "connect the background queue pair";
            be.connect(left(deadline), Protocol.joinRequest(sessionId)); // the listener creates it in the session's protection domain
            m = background.begin();
            Handshake.join(m, sessionId, auth == null ? null : auth.joinMac(sessionId, 0, 1));
            background.post(m);
            step = "wait for the destination's answer";
            MemorySegment answer = urgent.awaitHandshake(deadline);
            if (answer == null) {
                throw new TransportException(Kind.CONNECT_FAILED, "rdma: the destination " + uri.text() + " did not answer within "
                        + TimeUnit.NANOSECONDS.toMillis(context.connectTimeoutNs()) + " ms");
            }
            Handshake.First first;
            try {
                first = Handshake.read(answer, Protocol.MAX_HANDSHAKE_PAYLOAD);
            } catch (Handshake.VersionMismatch e) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri.text() + " speaks wire version " + e.version
                        + "; this source speaks version " + io.pagewire.transport.spi.wire.Wire.VERSION);
            }
            if (first.type() == FrameType.ERROR) {
                throw new TransportException(Kind.HANDSHAKE, "the destination " + uri.text() + " refused the migration: "
                        + PeerText.escape(first.payload()));
            }
            if (first.type() != FrameType.HELLO_ACK || first.header().first() != sessionId) {
                throw new WireException("expected HELLO_ACK for session " + Long.toHexString(sessionId) + ", got " + Protocol.name(first.type())
                        + " for " + Long.toHexString(first.header().first()));
            }
            Handshakes.checkAck(context, first.header().count());
            MemorySegment regionsPayload = Handshake.follow(first.after(), Protocol.RDMA_REGIONS, Protocol.MAX_HANDSHAKE_PAYLOAD);
            Protocol.Regions regions = Protocol.Regions.decode(regionsPayload, 0, regionsPayload.byteSize(), layout.descriptors(), o.batchBytes());
            urgent.releaseHandshake();
            urgent.setPeer(regions.rxDepth(), regions.stagingSlots());
            background.setPeer(regions.rxDepth(), regions.stagingSlots());
            RemoteRam remoteRam = new RemoteRam(layout, regions);
            ProtectionDomain domain = pd;
            RdmaConnection c = new RdmaConnection(Role.SOURCE, uri.text(), layout, o, o.batchBytes(), o.dataDigest(), context.handler(),
                    context.heartbeatIntervalNs(), context.peerTimeoutNs(), urgent, background, domain::close, localRam, remoteRam, null);
            c.start();
            return c;
        } catch (VerbsException e) {
            cleanup(urgent, background, localRam, pd);
            throw new TransportException(Kind.CONNECT_FAILED, "rdma: could not " + step + " to " + uri.text() + " (" + fabric.name()
                    + " fabric): " + e.getMessage(), e);
        } catch (WireException e) {
            cleanup(urgent, background, localRam, pd);
            throw new TransportException(Kind.HANDSHAKE, "rdma: the destination " + uri.text() + " answered with an invalid handshake: "
                    + e.getMessage(), e);
        } catch (RuntimeException e) {
            cleanup(urgent, background, localRam, pd);
            throw e;
        }
    }

    /**
     * The source's side of the kit's authentication on the urgent queue pair: its first message is
     * HELLO, RDMA_SETUP and AUTH 1; the destination's first is AUTH 2; then AUTH 3, and the destination's
     * HELLO_ACK (or ERROR) lands in the handshake buffer posted again for it.
     */
    private static AuthExchange.Result authenticate(TransportContext context, Hello hello, Channel urgent, int rxDepth, long deadline,
                                                    String uri) {
        urgent.handshakeMessages(2);
        String peer = "the destination " + uri;
        AuthExchange.Channel ch = new AuthExchange.Channel() {
            private boolean helloSent;

            @Override
            public void send(byte[] message) {
                Message m = urgent.begin();
                if (!helloSent) {
                    Handshake.hello(m, hello, rxDepth, message);
                    helloSent = true;
                } else {
                    try {
                        urgent.rearmHandshake(); // for the HELLO_ACK
                    } catch (VerbsException e) {
                        throw new TransportException(Kind.CONNECT_FAILED, "rdma: " + e.getMessage(), e);
                    }
                    Handshake.auth(m, message);
                }
                urgent.post(m);
            }

            @Override
            public void refuse(String why) {
                Message m = urgent.begin();
                Handshake.refuse(m, why);
                urgent.post(m);
                try {
                    urgent.awaitAllSent(System.nanoTime() + TimeUnit.SECONDS.toNanos(1));
                } catch (VerbsException e) {
                    throw new TransportException(Kind.CONNECTION_LOST, "rdma: could not tell " + peer + " why: " + e.getMessage(), e);
                }
            }

            @Override
            public byte[] receive(int maxBytes) {
                MemorySegment msg;
                try {
                    msg = urgent.awaitHandshake(deadline);
                } catch (VerbsException e) {
                    throw new TransportException(Kind.CONNECT_FAILED, "rdma: authentication with " + uri + " broke off: " + e.getMessage(), e);
                }
                if (msg == null) {
                    throw new TransportException(Kind.CONNECT_FAILED, "rdma: " + peer + " did not answer the authentication in time");
                }
                return Handshake.authPayload(msg, peer);
            }
        };
        try {
            return AuthExchange.source(context.authentication(), hello, ch, uri);
        } catch (java.io.IOException e) {
            throw new TransportException(Kind.CONNECT_FAILED, "rdma: authentication with " + uri + " broke off: " + e.getMessage(), e);
        }
    }

    private static long left(long deadline) {
        return Math.max(1, deadline - System.nanoTime());
    }

    private static void cleanup(Channel urgent, Channel background, LocalRam localRam, ProtectionDomain pd) {
        if (urgent != null) {
            urgent.close();
        }
        if (background != null) {
            background.close();
        }
        if (localRam != null) {
            localRam.close();
        }
        if (pd != null) {
            pd.close();
        }
    }
}
