package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.wire.Hello;
import io.pagewire.transport.spi.wire.WireException;

import javax.crypto.KeyAgreement;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import javax.naming.InvalidNameException;
import javax.naming.ldap.LdapName;
import javax.naming.ldap.Rdn;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.BufferUnderflowException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.MessageDigest;
import java.security.PublicKey;
import java.security.SecureRandom;
import java.security.cert.CertPathValidator;
import java.security.cert.CertificateFactory;
import java.security.cert.PKIXParameters;
import java.security.cert.TrustAnchor;
import java.security.cert.X509Certificate;
import java.security.spec.X509EncodedKeySpec;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;

/**
 * The authentication handshake, the same on every transport: three messages carried in
 * {@code AUTH} frames (type 15) right after the source's HELLO, before the destination checks the
 * layout or takes anything else from the source. Each side proves it holds the pre-shared key (an
 * HMAC-SHA256) or the private key of a certificate the peer's CA vouches for (a signature), over a
 * transcript that binds the HELLO, the session id in it, both nonces, both ephemeral X25519 keys and
 * both certificate chains; a replayed message fails because the other side's nonce and key are fresh each time.
 *
 * <pre>
 * source                                                           destination
 *   HELLO (flag AUTHENTICATED)  -------------------------------->
 *   AUTH 1: mode, nonce_s (32), X25519 key_s, [chain_s]  -------->   (mode must match)
 *          <--------  AUTH 2: mode, nonce_d (32), X25519 key_d, [chain_d], proof_d
 *   AUTH 3: proof_s  ------------------------------------------->   (verified: only now the layout is checked)
 *   JOIN ... payload = HMAC(session key, "join" | session | stream | streams)
 *          <--------  HELLO_ACK (or ERROR)
 *
 * T       = SHA-256("pagewire-auth-1" | len|HELLO | len|AUTH 1 | len|AUTH 2 without proof_d)
 * base    = X25519(key_s, key_d), or, with a pre-shared key, HMAC(psk, X25519(key_s, key_d))
 * proof_x = HMAC(base, "destination"|T) / HMAC(base, "source"|T) with a pre-shared key;
 *           the signature of "pagewire-auth-1 destination"|T / "... source"|T with certificates
 * session key = HMAC(base, "session"|T)
 * </pre>
 * Every message is {@code step (u8), mode (u8), reserved (u16)} then its fields; byte strings are
 * {@code u16 length, bytes}, a chain is {@code u16 count} then {@code u32 length, DER} per certificate.
 */
public final class AuthExchange {
    /** Longest AUTH message (certificate chains included). */
    public static final int MAX_MESSAGE_BYTES = 32 * 1024;
    /** Nonce length. */
    static final int NONCE_BYTES = 32;
    /** Length of a JOIN's MAC. */
    public static final int JOIN_MAC_BYTES = 32;
    private static final int MAX_CHAIN = 8;
    private static final byte[] LABEL = "pagewire-auth-1".getBytes(StandardCharsets.US_ASCII);
    private static final SecureRandom RANDOM = new SecureRandom();
    /** What a refused stranger is told: nothing about why. */
    public static final String REFUSED = "authentication failed";

    private AuthExchange() {
    }

    /** How a transport carries AUTH messages during its handshake (blocking, bounded by its handshake timeout). */
    public interface Channel {
        /** Sends one AUTH message. */
        void send(byte[] message) throws IOException;

        /**
         * @return the next AUTH message, at most {@code maxBytes}
         * @throws TransportException {@code HANDSHAKE} when the peer answered ERROR (its text, escaped), or anything else
         */
        byte[] receive(int maxBytes) throws IOException;

        /**
         * Source only: tells the destination why this side gives up (an ERROR where the next AUTH message would
         * go), so it stops waiting at once. Best effort: the caller throws its own error after it.
         */
        default void refuse(String why) throws IOException {
        }
    }

    /**
     * What an authenticated handshake leaves: the session key that MACs the session's JOINs (and,
     * where a transport offers it, frames), and who the peer proved to be.
     *
     * @param sessionKey 32 bytes, known to the two sides only
     * @param peerIdentity the peer's certificate subject, or "holder of the pre-shared key"
     */
    public record Result(byte[] sessionKey, String peerIdentity) {
        /** @return the MAC a JOIN of background stream {@code stream} of {@code streams} carries */
        public byte[] joinMac(long sessionId, long stream, long streams) {
            ByteBuffer b = ByteBuffer.allocate(4 + 24);
            b.put("join".getBytes(StandardCharsets.US_ASCII)).putLong(sessionId).putLong(stream).putLong(streams);
            return hmac(sessionKey, b.array());
        }

        /** @return whether {@code mac} is the right one for this JOIN (constant time) */
        public boolean checkJoin(long sessionId, long stream, long streams, byte[] mac) {
            return mac != null && MessageDigest.isEqual(joinMac(sessionId, stream, streams), mac);
        }

        /** @return a key for another purpose, derived from the session key (e.g. "frame-mac") */
        public byte[] derive(String purpose) {
            return hmac(sessionKey, purpose.getBytes(StandardCharsets.US_ASCII));
        }
    }

    /** An authentication that failed on the destination: why (for its log) and what the source is told. */
    public static final class Refusal extends TransportException {
        private final String detail;

        /**
         * @param detail the full reason, for this side's log
         * @param toPeer what the peer is told
         */
        public Refusal(String detail, String toPeer) {
            super(Kind.HANDSHAKE, toPeer);
            this.detail = detail;
        }

        /** @return the full reason, for the destination's own log */
        public String detail() {
            return detail;
        }
    }

    // ================================================================== source

    /**
     * The source's side, right after its HELLO went out.
     *
     * @param uri the destination, for messages
     * @return the session's keys
     * @throws TransportException {@code HANDSHAKE} when the destination refused or failed to prove itself
     */
    public static Result source(Authentication auth, Hello hello, Channel ch, String uri) throws IOException {
        try {
            byte[] nonce = nonce();
            KeyPair eph = ephemeral();
            byte[] pub = eph.getPublic().getEncoded();
            byte[] m1 = encode(1, auth.mode(), nonce, pub, auth.chain(), null);
            ch.send(m1);
            byte[] m2 = ch.receive(MAX_MESSAGE_BYTES);
            Parsed p2 = parse(m2, 2);
            if (p2.mode != auth.mode()) {
                throw giveUp(ch, new TransportException(Kind.HANDSHAKE, "the destination " + uri + " authenticates with " + describe(p2.mode)
                        + "; this source has " + describe(auth.mode())));
            }
            byte[] transcript = transcript(hello, m1, p2.body);
            byte[] base = base(auth, eph, p2.publicKey);
            String identity = checkProof(auth, p2, base, transcript, "destination");
            if (identity == null) {
                throw giveUp(ch, new TransportException(Kind.HANDSHAKE, "the destination " + uri + " failed to prove " + proofWhat(auth)
                        + ": it is not the destination this source was configured to trust"));
            }
            ch.send(encode(3, auth.mode(), null, null, null, proof(auth, base, transcript, "source")));
            return new Result(hmac(base, concat(bytes("session"), transcript)), identity);
        } catch (GeneralSecurityException e) {
            throw new TransportException(Kind.HANDSHAKE, "authentication with " + uri + " failed: " + e.getMessage(), e);
        } catch (WireException e) {
            throw giveUp(ch, new TransportException(Kind.HANDSHAKE, "the destination " + uri + " sent a malformed AUTH message: "
                    + e.getMessage(), e));
        }
    }

    /** Tells the destination this source gives up (it stops waiting for AUTH 3); @return {@code e}, with a failure to tell added */
    private static TransportException giveUp(Channel ch, TransportException e) {
        try {
            ch.refuse("the source gave up the authentication: the destination did not prove itself");
        } catch (IOException | RuntimeException x) {
            e.addSuppressed(x);
        }
        return e;
    }

    // ================================================================== destination

    /**
     * The destination's side, once a HELLO asking for authentication has been decoded.
     *
     * @param peer the source, for messages
     * @return the session's keys
     * @throws Refusal when the source failed: {@link Refusal#detail()} says why, its message tells the source little
     */
    public static Result destination(Authentication auth, Hello hello, Channel ch, String peer) throws IOException {
        try {
            byte[] m1 = ch.receive(MAX_MESSAGE_BYTES);
            Parsed p1 = parse(m1, 1);
            if (p1.mode != auth.mode()) {
                throw new Refusal("source " + peer + " offered " + describe(p1.mode) + "; this destination requires " + describe(auth.mode()),
                        REFUSED + ": this destination requires " + describe(auth.mode()));
            }
            if (auth.mode() == Authentication.Mode.CERTIFICATE) {
                String why = chainRefusal(auth, p1.chain);
                if (why != null) {
                    throw new Refusal("source " + peer + ": " + why, REFUSED);
                }
            }
            byte[] nonce = nonce();
            KeyPair eph = ephemeral();
            byte[] body = encode(2, auth.mode(), nonce, eph.getPublic().getEncoded(), auth.chain(), null);
            byte[] transcript = transcript(hello, m1, body);
            byte[] base = base(auth, eph, p1.publicKey);
            ch.send(encode(2, auth.mode(), nonce, eph.getPublic().getEncoded(), auth.chain(), proof(auth, base, transcript, "destination")));
            byte[] m3;
            try {
                m3 = ch.receive(MAX_MESSAGE_BYTES);
            } catch (TransportException e) {
                throw new Refusal("source " + peer + " gave up: " + e.getMessage(), REFUSED);
            }
            Parsed p3 = parse(m3, 3);
            p3 = new Parsed(p3.mode, p3.nonce, p3.publicKey, p1.chain, p3.proof, p3.body);
            String identity = p3.mode == auth.mode() ? checkProof(auth, p3, base, transcript, "source") : null;
            if (identity == null) {
                throw new Refusal("source " + peer + " failed to prove " + proofWhat(auth) + " (wrong key, or a replayed handshake)", REFUSED);
            }
            return new Result(hmac(base, concat(bytes("session"), transcript)), identity);
        } catch (GeneralSecurityException e) {
            throw new Refusal("source " + peer + ": authentication failed: " + e.getMessage(), REFUSED);
        } catch (WireException e) {
            throw new Refusal("source " + peer + " sent a malformed AUTH message: " + e.getMessage(), REFUSED + ": malformed AUTH message");
        }
    }

    // ================================================================== proofs

    private static String proofWhat(Authentication auth) {
        return auth.mode() == Authentication.Mode.PSK ? "it holds the pre-shared key" : "it holds a certificate this side accepts";
    }

    private static String describe(Authentication.Mode m) {
        return m == Authentication.Mode.PSK ? "a pre-shared key (psk-file=)" : "certificates (tls-creds= or cert=,key=,ca=)";
    }

    private static byte[] proof(Authentication auth, byte[] base, byte[] transcript, String role) throws GeneralSecurityException {
        if (auth.mode() == Authentication.Mode.PSK) {
            return hmac(base, concat(bytes(role), transcript));
        }
        return Authentication.sign(auth.key(), concat(LABEL, bytes(" " + role), transcript));
    }

    /** @return the peer's identity when its proof holds, else null */
    private static String checkProof(Authentication auth, Parsed p, byte[] base, byte[] transcript, String role) throws GeneralSecurityException {
        if (auth.mode() == Authentication.Mode.PSK) {
            return MessageDigest.isEqual(hmac(base, concat(bytes(role), transcript)), p.proof) ? "holder of the pre-shared key" : null;
        }
        if (chainRefusal(auth, p.chain) != null) {
            return null;
        }
        X509Certificate leaf = p.chain.getFirst();
        return Authentication.verify(leaf, concat(LABEL, bytes(" " + role), transcript), p.proof)
                ? leaf.getSubjectX500Principal().getName() : null;
    }

    /** @return why a peer's chain is not accepted (CA, validity, allow-list), or null */
    static String chainRefusal(Authentication auth, List<X509Certificate> chain) {
        if (chain.isEmpty()) {
            return "presented no certificate";
        }
        X509Certificate leaf = chain.getFirst();
        try {
            Set<TrustAnchor> anchors = new HashSet<>();
            for (X509Certificate ca : auth.trusted()) {
                anchors.add(new TrustAnchor(ca, null));
            }
            PKIXParameters params = new PKIXParameters(anchors);
            params.setRevocationEnabled(false);
            CertPathValidator.getInstance("PKIX").validate(CertificateFactory.getInstance("X.509").generateCertPath(chain), params);
        } catch (GeneralSecurityException e) {
            return "certificate '" + leaf.getSubjectX500Principal().getName() + "' is not vouched for by this side's CA: " + e.getMessage();
        }
        if (auth.authz().isEmpty()) {
            return null;
        }
        Set<String> ids = identities(leaf);
        for (String id : ids) {
            if (auth.authz().contains(id)) {
                return null;
            }
        }
        return "identity " + ids + " is not in tls-authz " + auth.authz();
    }

    /** @return the subject CNs and DNS subjectAltNames of a certificate */
    static Set<String> identities(X509Certificate c) {
        Set<String> out = new LinkedHashSet<>();
        try {
            for (Rdn rdn : new LdapName(c.getSubjectX500Principal().getName()).getRdns()) {
                if (rdn.getType().equalsIgnoreCase("CN")) {
                    out.add(rdn.getValue().toString());
                }
            }
            if (c.getSubjectAlternativeNames() != null) {
                for (List<?> san : c.getSubjectAlternativeNames()) {
                    if (Integer.valueOf(2).equals(san.get(0))) {
                        out.add(san.get(1).toString());
                    }
                }
            }
        } catch (InvalidNameException | java.security.cert.CertificateParsingException e) {
            // an unparsable name matches nothing
        }
        return out;
    }

    // ================================================================== encoding

    private record Parsed(Authentication.Mode mode, byte[] nonce, PublicKey publicKey, List<X509Certificate> chain, byte[] proof, byte[] body) {
    }

    private static byte[] encode(int step, Authentication.Mode mode, byte[] nonce, byte[] pub, List<X509Certificate> chain, byte[] proof)
            throws GeneralSecurityException {
        List<byte[]> ders = new ArrayList<>();
        int n = 4;
        if (step != 3) {
            n += 2 + nonce.length + 2 + pub.length + 2;
            for (X509Certificate c : chain) {
                byte[] der = c.getEncoded();
                ders.add(der);
                n += 4 + der.length;
            }
        }
        if (proof != null) {
            n += 2 + proof.length;
        }
        ByteBuffer b = ByteBuffer.allocate(n);
        b.put((byte) step).put((byte) mode.code).putShort((short) 0);
        if (step != 3) {
            putBytes(b, nonce);
            putBytes(b, pub);
            b.putShort((short) ders.size());
            for (byte[] der : ders) {
                b.putInt(der.length).put(der);
            }
        }
        if (proof != null) {
            putBytes(b, proof);
        }
        return b.array();
    }

    private static void putBytes(ByteBuffer b, byte[] v) {
        b.putShort((short) v.length).put(v);
    }

    private static byte[] getBytes(ByteBuffer b, int max, String what) {
        int len = Short.toUnsignedInt(b.getShort());
        if (len > max || len > b.remaining()) {
            throw new WireException("AUTH " + what + " of " + len + " bytes (at most " + Math.min(max, b.remaining()) + ")");
        }
        byte[] v = new byte[len];
        b.get(v);
        return v;
    }

    /** Parses an untrusted AUTH message of step {@code step}; {@code body} is the message without the trailing proof. */
    private static Parsed parse(byte[] m, int step) {
        try {
            ByteBuffer b = ByteBuffer.wrap(m);
            int got = Byte.toUnsignedInt(b.get());
            Authentication.Mode mode = Authentication.Mode.of(Byte.toUnsignedInt(b.get()));
            if (got != step || mode == null || b.getShort() != 0) {
                throw new WireException("expected AUTH step " + step + ", got step " + got + " mode " + (mode == null ? "unknown" : mode));
            }
            byte[] nonce = null;
            PublicKey pub = null;
            List<X509Certificate> chain = List.of();
            if (step != 3) {
                nonce = getBytes(b, NONCE_BYTES, "nonce");
                if (nonce.length != NONCE_BYTES) {
                    throw new WireException("AUTH nonce of " + nonce.length + " bytes, not " + NONCE_BYTES);
                }
                pub = KeyFactory.getInstance("X25519").generatePublic(new X509EncodedKeySpec(getBytes(b, 128, "key share")));
                int count = Short.toUnsignedInt(b.getShort());
                if (count > MAX_CHAIN) {
                    throw new WireException("AUTH chain of " + count + " certificates (at most " + MAX_CHAIN + ")");
                }
                List<X509Certificate> certs = new ArrayList<>(count);
                CertificateFactory cf = CertificateFactory.getInstance("X.509");
                for (int i = 0; i < count; i++) {
                    int len = b.getInt();
                    if (len < 0 || len > b.remaining()) {
                        throw new WireException("AUTH certificate " + i + " of " + Integer.toUnsignedString(len) + " bytes, past the message end");
                    }
                    byte[] der = new byte[len];
                    b.get(der);
                    certs.add((X509Certificate) cf.generateCertificate(new ByteArrayInputStream(der)));
                }
                chain = List.copyOf(certs);
            }
            int bodyEnd = b.position();
            byte[] proof = null;
            if (step != 1) {
                proof = getBytes(b, 1024, "proof");
            }
            if (b.hasRemaining()) {
                throw new WireException("AUTH step " + step + " followed by " + b.remaining() + " unexpected bytes");
            }
            byte[] body = java.util.Arrays.copyOf(m, bodyEnd);
            return new Parsed(mode, nonce, pub, chain, proof, body);
        } catch (BufferUnderflowException e) {
            throw new WireException("AUTH step " + step + " truncated at " + m.length + " bytes");
        } catch (GeneralSecurityException e) {
            throw new WireException("AUTH step " + step + ": " + e.getMessage());
        }
    }

    private static byte[] transcript(Hello hello, byte[] m1, byte[] m2body) throws GeneralSecurityException {
        byte[] h = new byte[hello.encodedLength()];
        hello.encode(MemorySegment.ofArray(h));
        MessageDigest d = MessageDigest.getInstance("SHA-256");
        d.update(LABEL);
        for (byte[] part : List.of(h, m1, m2body)) {
            d.update(ByteBuffer.allocate(4).putInt(part.length).array());
            d.update(part);
        }
        return d.digest();
    }

    private static byte[] base(Authentication auth, KeyPair own, PublicKey peer) throws GeneralSecurityException {
        KeyAgreement ka = KeyAgreement.getInstance("X25519");
        ka.init(own.getPrivate());
        ka.doPhase(peer, true);
        byte[] shared = ka.generateSecret();
        return auth.mode() == Authentication.Mode.PSK ? hmac(auth.psk(), shared) : shared;
    }

    private static KeyPair ephemeral() throws GeneralSecurityException {
        return KeyPairGenerator.getInstance("X25519").generateKeyPair();
    }

    private static byte[] nonce() {
        byte[] n = new byte[NONCE_BYTES];
        RANDOM.nextBytes(n);
        return n;
    }

    static byte[] hmac(byte[] key, byte[] data) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
            return mac.doFinal(data);
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HmacSHA256 is part of every JDK", e);
        }
    }

    private static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.US_ASCII);
    }

    private static byte[] concat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) {
            n += p.length;
        }
        ByteBuffer b = ByteBuffer.allocate(n);
        for (byte[] p : parts) {
            b.put(p);
        }
        return b.array();
    }
}
