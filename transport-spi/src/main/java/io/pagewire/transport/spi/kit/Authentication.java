package io.pagewire.transport.spi.kit;

import io.pagewire.transport.spi.Role;
import io.pagewire.transport.spi.TransportException;
import io.pagewire.transport.spi.TransportException.Kind;
import io.pagewire.transport.spi.TransportUri;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.cert.CertificateException;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.ArrayList;
import java.util.Base64;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import javax.net.ssl.KeyManagerFactory;
import javax.net.ssl.SSLContext;
import javax.net.ssl.TrustManagerFactory;

/**
 * The credentials one side of a migration proves itself with, and what it demands of the peer:
 * a pre-shared key ({@code psk-file=PATH}) or certificates ({@code tls-creds=DIR} in the layout of
 * QEMU's {@code tls-creds-x509}, or {@code cert=,key=,ca=} PEM files) with an optional allow-list
 * of peer identities ({@code tls-authz=NAME,NAME}, subject CN or DNS subjectAltName). The same
 * options work on every transport: the kit's handshake ({@link AuthExchange}) runs them.
 *
 * <p>Immutable once loaded; loading reads and checks every file, naming the file and what is wrong.
 */
public final class Authentication {
    /** The URI options, with what each means (accepted by every transport). */
    public static final Map<String, String> OPTIONS;

    static {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("psk-file", "pre-shared key file (at least " + 16 + " bytes; both sides the same): mutual HMAC-SHA256 authentication");
        m.put("tls-creds", "directory with ca-cert.pem, server-cert.pem/server-key.pem (destination), client-cert.pem/client-key.pem (source)");
        m.put("cert", "this side's certificate chain (PEM); with key= and ca=");
        m.put("key", "this side's private key (PKCS#8 PEM, unencrypted)");
        m.put("ca", "the CA certificate(s) a peer's certificate must chain to (PEM)");
        m.put("tls-authz", "peer identities allowed in (subject CN or DNS subjectAltName), comma-separated; default: any certificate of the CA");
        OPTIONS = Collections.unmodifiableMap(m);
    }

    /** Shortest pre-shared key accepted, in bytes. */
    public static final int MIN_PSK_BYTES = 16;
    /** Longest credential file read. */
    static final int MAX_FILE_BYTES = 1 << 20;

    /** How a side proves itself. */
    public enum Mode {
        /** A pre-shared key: HMAC-SHA256 over the handshake transcript. */
        PSK(1),
        /** A certificate chain and its key: a signature over the handshake transcript. */
        CERTIFICATE(2);

        final int code;

        Mode(int code) {
            this.code = code;
        }

        static Mode of(int code) {
            for (Mode m : values()) {
                if (m.code == code) {
                    return m;
                }
            }
            return null;
        }
    }

    private final Mode mode;
    private final byte[] psk;
    private final PrivateKey key;
    private final List<X509Certificate> chain;
    private final List<X509Certificate> trusted;
    private final Set<String> authz;
    private final String description;

    private Authentication(Mode mode, byte[] psk, PrivateKey key, List<X509Certificate> chain, List<X509Certificate> trusted,
                           Set<String> authz, String description) {
        this.mode = mode;
        this.psk = psk;
        this.key = key;
        this.chain = chain;
        this.trusted = trusted;
        this.authz = authz;
        this.description = description;
    }

    /** @return whether the URI names any authentication option */
    public static boolean requested(TransportUri uri) {
        for (String name : OPTIONS.keySet()) {
            if (uri.options().containsKey(name)) {
                return true;
            }
        }
        return false;
    }

    /**
     * Reads the authentication options of a URI.
     *
     * @param role which side: a destination uses {@code server-*} files of {@code tls-creds}, a source {@code client-*}
     * @return the credentials, or null when the URI names none
     * @throws TransportException {@code INVALID_URI} for a bad combination, {@code INVALID_CONFIG} for a file that cannot be used
     */
    public static Authentication fromUri(TransportUri uri, Role role) {
        Map<String, String> o = uri.options();
        if (!requested(uri)) {
            return null;
        }
        String psk = o.get("psk-file");
        String creds = o.get("tls-creds");
        boolean explicit = o.containsKey("cert") || o.containsKey("key") || o.containsKey("ca");
        int ways = (psk != null ? 1 : 0) + (creds != null ? 1 : 0) + (explicit ? 1 : 0);
        if (ways != 1) {
            throw new TransportException(Kind.INVALID_URI, "'" + uri.text() + "': give exactly one of psk-file=PATH, tls-creds=DIR or"
                    + " cert=,key=,ca= (" + (ways == 0 ? "tls-authz= alone names no credentials" : "several were given") + ")");
        }
        if (psk != null) {
            if (o.containsKey("tls-authz")) {
                throw new TransportException(Kind.INVALID_URI, "'" + uri.text() + "': tls-authz= needs certificates; a pre-shared key"
                        + " has no identities to allow");
            }
            return psk(Path.of(psk));
        }
        Set<String> authz = new LinkedHashSet<>();
        String list = o.get("tls-authz");
        if (list != null) {
            for (String name : list.split(",")) {
                if (name.isBlank()) {
                    throw uri.badOption("tls-authz", list, "identities separated by commas, none empty");
                }
                authz.add(name.strip());
            }
        }
        if (creds != null) {
            Path dir = Path.of(creds);
            String who = role == Role.DESTINATION ? "server" : "client";
            return certificates(dir.resolve(who + "-cert.pem"), dir.resolve(who + "-key.pem"), dir.resolve("ca-cert.pem"), authz);
        }
        for (String name : List.of("cert", "key", "ca")) {
            if (!o.containsKey(name)) {
                throw new TransportException(Kind.INVALID_URI, "'" + uri.text() + "': cert=, key= and ca= go together; " + name + "= is missing");
            }
        }
        return certificates(Path.of(o.get("cert")), Path.of(o.get("key")), Path.of(o.get("ca")), authz);
    }

    /** @return pre-shared key authentication with the key in {@code file} (its bytes as they are) */
    public static Authentication psk(Path file) {
        byte[] k = read(file, "pre-shared key");
        if (k.length < MIN_PSK_BYTES) {
            throw new TransportException(Kind.INVALID_CONFIG, "pre-shared key file " + file + " holds " + k.length + " bytes; at least "
                    + MIN_PSK_BYTES + " are needed (e.g. head -c 32 /dev/urandom > " + file + ")");
        }
        return new Authentication(Mode.PSK, k, null, List.of(), List.of(), Set.of(), "pre-shared key " + file);
    }

    /**
     * @param cert this side's certificate chain, leaf first
     * @param key its private key (PKCS#8)
     * @param ca the CA certificates a peer's chain must end in
     * @param authz peer identities allowed (empty: any certificate of the CA)
     * @return certificate authentication
     */
    public static Authentication certificates(Path cert, Path key, Path ca, Set<String> authz) {
        List<X509Certificate> chain = certificates(cert, "certificate");
        List<X509Certificate> trusted = certificates(ca, "CA certificate");
        PrivateKey k = privateKey(key);
        try {
            // A key that does not match the certificate would fail every handshake at the peer: say so here.
            byte[] probe = "pagewire key check".getBytes(StandardCharsets.UTF_8);
            byte[] sig = sign(k, probe);
            if (!verify(chain.getFirst(), probe, sig)) {
                throw new TransportException(Kind.INVALID_CONFIG, "private key " + key + " does not belong to certificate " + cert);
            }
        } catch (GeneralSecurityException e) {
            throw new TransportException(Kind.INVALID_CONFIG, "private key " + key + " cannot sign for certificate " + cert + ": " + e.getMessage(), e);
        }
        return new Authentication(Mode.CERTIFICATE, null, k, chain, trusted, Set.copyOf(authz),
                "certificate " + cert + " (" + chain.getFirst().getSubjectX500Principal().getName() + ")");
    }

    /** @return how this side proves itself */
    public Mode mode() {
        return mode;
    }

    /**
     * The TLS 1.3 context of these certificates: this side's chain and key, the CA as the only trust
     * anchor (PKIX, validity dates checked). Identities ({@code tls-authz}) are checked by the kit's
     * handshake that runs inside the TLS session, as without TLS, so refusals read the same.
     *
     * @throws TransportException {@code INVALID_URI} for a pre-shared key: the JDK's TLS has no external PSK
     */
    public SSLContext tlsContext(String uri) {
        if (mode != Mode.CERTIFICATE) {
            throw new TransportException(Kind.INVALID_URI, "'" + uri + "': tls=on needs certificates (tls-creds=DIR or cert=,key=,ca=);"
                    + " a pre-shared key (" + description + ") authenticates but cannot key TLS here (the JDK's TLS 1.3 has no external"
                    + " pre-shared keys); drop tls=on or use certificates (scripts/make-test-ca.sh)");
        }
        try {
            char[] none = new char[0];
            KeyStore own = KeyStore.getInstance("PKCS12");
            own.load(null, null);
            own.setKeyEntry("pagewire", key, none, chain.toArray(new X509Certificate[0]));
            KeyManagerFactory kmf = KeyManagerFactory.getInstance("PKIX");
            kmf.init(own, none);
            KeyStore anchors = KeyStore.getInstance("PKCS12");
            anchors.load(null, null);
            for (int i = 0; i < trusted.size(); i++) {
                anchors.setCertificateEntry("ca-" + i, trusted.get(i));
            }
            TrustManagerFactory tmf = TrustManagerFactory.getInstance("PKIX");
            tmf.init(anchors);
            SSLContext ctx = SSLContext.getInstance("TLSv1.3");
            ctx.init(kmf.getKeyManagers(), tmf.getTrustManagers(), null);
            return ctx;
        } catch (GeneralSecurityException | IOException e) {
            throw new TransportException(Kind.INVALID_CONFIG, "cannot make a TLS 1.3 context of " + this + ": " + e.getMessage(), e);
        }
    }

    /** @return the pre-shared key (PSK mode) */
    byte[] psk() {
        return psk;
    }

    /** @return this side's chain, leaf first (certificate mode) */
    List<X509Certificate> chain() {
        return chain;
    }

    /** @return the CA certificates a peer must chain to */
    List<X509Certificate> trusted() {
        return trusted;
    }

    /** @return the identities allowed in; empty allows any certificate of the CA */
    Set<String> authz() {
        return authz;
    }

    /** @return this side's private key (certificate mode) */
    PrivateKey key() {
        return key;
    }

    @Override
    public String toString() {
        return description + (authz.isEmpty() ? "" : ", peers allowed: " + String.join(",", authz));
    }

    // ------------------------------------------------------------------ files

    private static byte[] read(Path file, String what) {
        try {
            long size = Files.size(file);
            if (size > MAX_FILE_BYTES) {
                throw new TransportException(Kind.INVALID_CONFIG, what + " file " + file + " is " + size + " bytes, over the "
                        + MAX_FILE_BYTES + "-byte limit");
            }
            return Files.readAllBytes(file);
        } catch (IOException e) {
            throw new TransportException(Kind.INVALID_CONFIG, "cannot read " + what + " file " + file + ": " + e, e);
        }
    }

    private static List<X509Certificate> certificates(Path file, String what) {
        byte[] pem = read(file, what);
        try {
            List<X509Certificate> out = new ArrayList<>();
            for (var c : CertificateFactory.getInstance("X.509").generateCertificates(new ByteArrayInputStream(pem))) {
                out.add((X509Certificate) c);
            }
            if (out.isEmpty()) {
                throw new TransportException(Kind.INVALID_CONFIG, what + " file " + file + " holds no certificate (expected PEM"
                        + " \"-----BEGIN CERTIFICATE-----\")");
            }
            return List.copyOf(out);
        } catch (CertificateException e) {
            throw new TransportException(Kind.INVALID_CONFIG, what + " file " + file + " is not a PEM certificate: " + e.getMessage(), e);
        }
    }

    private static PrivateKey privateKey(Path file) {
        String pem = new String(read(file, "private key"), StandardCharsets.US_ASCII);
        String begin = "-----BEGIN PRIVATE KEY-----";
        int b = pem.indexOf(begin);
        int e = pem.indexOf("-----END PRIVATE KEY-----");
        if (b < 0 || e < b) {
            String hint = pem.contains("ENCRYPTED PRIVATE KEY") ? "an encrypted key; decrypt it (openssl pkcs8 -in K -out K.pem)"
                    : pem.contains("PRIVATE KEY") ? "a traditional (PKCS#1/SEC1) key; convert it: openssl pkcs8 -topk8 -nocrypt -in K -out K.pem"
                    : "no \"" + begin + "\" block";
            throw new TransportException(Kind.INVALID_CONFIG, "private key file " + file + " holds " + hint);
        }
        byte[] der;
        try {
            der = Base64.getMimeDecoder().decode(pem.substring(b + begin.length(), e));
        } catch (IllegalArgumentException x) {
            throw new TransportException(Kind.INVALID_CONFIG, "private key file " + file + ": bad base64: " + x.getMessage(), x);
        }
        for (String alg : List.of("EC", "RSA", "Ed25519", "Ed448")) {
            try {
                return KeyFactory.getInstance(alg).generatePrivate(new PKCS8EncodedKeySpec(der));
            } catch (GeneralSecurityException x) {
                // not this algorithm: try the next
            }
        }
        throw new TransportException(Kind.INVALID_CONFIG, "private key file " + file + " is not an EC, RSA, Ed25519 or Ed448 PKCS#8 key");
    }

    // ------------------------------------------------------------------ signatures

    private static String signatureAlgorithm(String keyAlgorithm) throws GeneralSecurityException {
        return switch (keyAlgorithm) {
            case "EC" -> "SHA256withECDSA";
            case "RSA" -> "SHA256withRSA";
            case "Ed25519", "Ed448", "EdDSA" -> "EdDSA"; // the key says which curve
            default -> throw new GeneralSecurityException("unsupported key algorithm " + keyAlgorithm);
        };
    }

    static byte[] sign(PrivateKey key, byte[] data) throws GeneralSecurityException {
        Signature s = Signature.getInstance(signatureAlgorithm(key.getAlgorithm()));
        s.initSign(key);
        s.update(data);
        return s.sign();
    }

    static boolean verify(X509Certificate cert, byte[] data, byte[] signature) throws GeneralSecurityException {
        Signature s = Signature.getInstance(signatureAlgorithm(cert.getPublicKey().getAlgorithm()));
        s.initVerify(cert.getPublicKey());
        s.update(data);
        try {
            return s.verify(signature);
        } catch (java.security.SignatureException e) {
            return false; // a malformed signature is a wrong one
        }
    }
}
