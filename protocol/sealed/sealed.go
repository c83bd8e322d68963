// Package sealed is sealed sender: it wraps a Signal Protocol message so that the
// envelope a server relays names the recipient and nothing else. It implements
// libsignal's sealed sender version 1 (UnidentifiedSenderMessage, version byte 0x11;
// rust/protocol/src/sealed_sender.rs and proto/sealed_sender.proto at libsignal 0.90.0)
// byte for byte, so a message sealed here opens in libsignal and the reverse.
//
// # What the server learns
//
// From a sealed envelope the server learns its destination (the account and device
// whose queue it sits in, which the recipient's authenticated connection reveals
// anyway), its size and when it arrived. It does not learn who sent it: the sender's
// identity key, account id, device id and certificate travel only inside the
// encryption, under keys derived from the recipient's identity key and a fresh
// ephemeral key, so two envelopes from one sender look unrelated, and a stored queue,
// a backup or a database handed over under an order holds no sender.
//
// What sealing cannot hide is how the envelope reached the server. If the send request
// is authenticated as the sending device (Bastion's PUT /v1/messages is, today), the
// server knows the sender at that moment; Bastion's server is built not to record it
// (the envelope has no source field, no sender-recipient pair is logged), but that is
// the server's policy, not this package's guarantee. Hiding the sender from a server
// that does not cooperate takes an unauthenticated send path as well (Signal's
// "unidentified access"), and, against the network, hiding the IP address and timing.
//
// # What the recipient learns, and why it can trust it
//
// Inside the encryption travels a sender certificate (package certificate): the
// server's signed statement that account A, device D holds identity key K, valid until
// an expiry. [Decrypt] opens the message only if
//   - the sender proved possession of K's private key: the inner layer's keys come from
//     an X25519 agreement between K and the recipient's identity key, and K must equal
//     the certificate's identity key (compared in constant time);
//   - the certificate chains to the trust root the client was configured with, its
//     server key id is not revoked, and it has not expired at the given time.
//
// So the certificate stops one user from claiming to be another: the server vouches for
// the binding of account to key once a day, and each message proves the key. The
// certificate does not make the server trustworthy: the server could certify a key of
// its choosing for any account. What protects against that is the session layer: the
// inner message decrypts only under the session of the address the certificate names,
// an existing session authenticates its messages with the identity key it was built
// with, and a new session's identity key goes through the identity store's trust
// decision (safety numbers, key transparency). A client should also check that
// [Content].Certificate.IdentityKey is the identity key it trusts for [Content].Sender.
//
// # Construction (sealed sender v1)
//
//	e                      = fresh X25519 key pair
//	chain, ek_enc, ek_mac  = HKDF-SHA256(ikm = X25519(e, recipient identity),
//	                                     salt = "UnidentifiedDelivery" || recipient identity || e.pub,
//	                                     info = "", 96 bytes)
//	static                 = AES-256-CTR(ek_enc, sender identity key) || HMAC-SHA256(ek_mac, ·)[:10]
//	_, sk_enc, sk_mac      = HKDF-SHA256(ikm = X25519(sender identity, recipient identity),
//	                                     salt = chain || static, info = "", 96 bytes)
//	message                = AES-256-CTR(sk_enc, UnidentifiedSenderMessage.Message) || HMAC-SHA256(sk_mac, ·)[:10]
//	sealed                 = 0x11 || UnidentifiedSenderMessage{e.pub, static, message}
//
// The counter starts at zero for both layers: each key encrypts exactly one message.
//
// What it does not protect: the inner message's confidentiality and authenticity beyond
// what the Signal session gives it (the body is normally an already encrypted
// SignalMessage, PreKeySignalMessage or SenderKeyMessage; type 8, plaintext content, is
// only sealed, so only the sealing protects it), replay of a whole sealed message (the
// session layer refuses a repeated message), and deniability towards the recipient,
// who holds a server-signed certificate naming the sender.
//
// Sealed sender v2 (multi-recipient, version 0x22/0x23) is not implemented.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/bastionchat/bastion/protocol"
	"github.com/bastionchat/bastion/protocol/certificate"
	"github.com/bastionchat/bastion/protocol/curve"
	"github.com/bastionchat/bastion/protocol/internal/primitives"
)

var (
	// ErrInvalid is the one error [Decrypt] returns for a message it cannot open or does
	// not trust, whatever the reason (encoding, MAC, key mismatch, certificate), so that
	// a client that reports failures to a peer cannot become an oracle.
	ErrInvalid = errors.New("sealed: invalid message")
	// ErrSelfSend is returned by [DecryptFor] for an authentic message whose certificate
	// names the recipient's own device. It is distinct from ErrInvalid because it can
	// only be reached after full authentication, so it reveals nothing to a forger.
	ErrSelfSend = errors.New("sealed: message from this device")
)

const (
	// Version is the first byte of a sealed sender v1 message: major version 1 in the
	// high nibble, 1 in the low one, the only value libsignal writes. Other v1 bytes
	// (0x10..0x1f, and libsignal's tolerated 0x0_) are refused: no sender emits them.
	Version = 0x11

	// macSize is the truncated HMAC-SHA256 tag of both layers: 10 bytes, as libsignal's
	// aes256_ctr_hmacsha256 appends it.
	macSize = 10
	// saltPrefix is the HKDF salt prefix of the ephemeral layer (libsignal's SALT_PREFIX).
	saltPrefix = "UnidentifiedDelivery"
)

// Content types inside a sealed message, as protocol.MessageType (libsignal's
// CiphertextMessageType). The types 7 and 8 have no constant in package protocol.
const (
	TypeSenderKey protocol.MessageType = 7 // a senderkey.Message for a group
	TypePlaintext protocol.MessageType = 8 // libsignal's PlaintextContent (decryption error reports)
)

// ContentHint is libsignal's UnidentifiedSenderMessage.Message.ContentHint: what the
// recipient should do if it cannot decrypt the body. Unknown values are kept as they are.
type ContentHint uint32

const (
	// HintDefault: the sender will not resend; show an error at once. It is not encoded.
	HintDefault ContentHint = 0
	// HintResendable: the sender will resend on request; delay any error.
	HintResendable ContentHint = 1
	// HintImplicit: something sent implicitly (a receipt, a typing indicator); show nothing.
	HintImplicit ContentHint = 2
)

// Content is an opened sealed message.
type Content struct {
	// Sender is the sending device, from the validated certificate: the account id in its
	// canonical string form and the device id.
	Sender protocol.Address
	// Certificate is the sender's validated certificate.
	Certificate *certificate.Sender
	// Type says how to parse Body: protocol.TypeSignal, protocol.TypePreKey,
	// [TypeSenderKey] or [TypePlaintext].
	Type protocol.MessageType
	// Body is the inner message.
	Body []byte
	// GroupID is the group the message belongs to, if the sender named one.
	GroupID []byte
	// ContentHint is the sender's hint for a body that fails to decrypt.
	ContentHint ContentHint
}

// Protobuf field numbers (sealed_sender.proto).
const (
	// UnidentifiedSenderMessage.
	fieldEphemeral        = 1
	fieldEncryptedStatic  = 2
	fieldEncryptedMessage = 3

	// UnidentifiedSenderMessage.Message.
	fieldType        = 1
	fieldCertificate = 2
	fieldContent     = 3
	fieldContentHint = 4
	fieldGroupID     = 5
)

// toWireType maps a CiphertextMessageType to UnidentifiedSenderMessage.Message.Type:
// the same number except PreKey, which is 1 on the wire (an older numbering).
func toWireType(t protocol.MessageType) (uint64, bool) {
	switch t {
	case protocol.TypePreKey:
		return 1, true
	case protocol.TypeSignal, TypeSenderKey, TypePlaintext:
		return uint64(t), true
	}
	return 0, false
}

func fromWireType(v uint64) (protocol.MessageType, bool) {
	switch v {
	case 1:
		return protocol.TypePreKey, true
	case uint64(protocol.TypeSignal), uint64(TypeSenderKey), uint64(TypePlaintext):
		return protocol.MessageType(v), true
	}
	return 0, false
}

// Encrypt seals body, a message of type msgType, for the device whose identity key is
// recipientIdentity. sender is the sending device's identity key pair and cert its
// sender certificate (from the server's delivery endpoint), which must name sender's
// public key: a mismatch would be refused by every recipient, so it is refused here.
// groupID is optional (nil or empty: none). rand supplies the ephemeral key (nil means
// crypto/rand).
func Encrypt(rand io.Reader, recipientIdentity *curve.PublicKey, sender *protocol.IdentityKeyPair,
	cert []byte, msgType protocol.MessageType, body []byte, groupID []byte) ([]byte, error) {
	return encrypt(rand, recipientIdentity, sender, cert, msgType, body, groupID, HintDefault)
}

func encrypt(rand io.Reader, recipientIdentity *curve.PublicKey, sender *protocol.IdentityKeyPair,
	cert []byte, msgType protocol.MessageType, body []byte, groupID []byte, hint ContentHint) ([]byte, error) {
	if recipientIdentity == nil || sender == nil {
		return nil, errors.New("sealing: nil key")
	}
	wireType, ok := toWireType(msgType)
	if !ok {
		return nil, fmt.Errorf("sealing: message type %d cannot be sealed", msgType)
	}
	c, err := certificate.ParseSender(cert)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	senderKey := sender.PublicKey()
	if !c.IdentityKey.Equal(senderKey) {
		return nil, errors.New("sealing: certificate is for another identity key")
	}

	// UnidentifiedSenderMessage.Message, fields in number order as libsignal writes them.
	var usmc []byte
	usmc = appendUint(usmc, fieldType, wireType)
	usmc = appendBytes(usmc, fieldCertificate, cert)
	usmc = appendBytes(usmc, fieldContent, body)
	if hint != HintDefault {
		usmc = appendUint(usmc, fieldContentHint, uint64(hint))
	}
	if len(groupID) > 0 {
		usmc = appendBytes(usmc, fieldGroupID, groupID)
	}

	eph, err := curve.GeneratePrivateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	ephPub := eph.PublicKey()
	ek, err := ephemeralKeys(eph, recipientIdentity, recipientIdentity, ephPub)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	static := seal(ek.cipher, ek.mac, senderKey.Bytes())
	sk, err := staticKeys(sender.PrivateKey(), recipientIdentity, ek.chain, static)
	if err != nil {
		return nil, fmt.Errorf("sealing: %w", err)
	}
	message := seal(sk.cipher, sk.mac, usmc)

	out := []byte{Version}
	out = appendBytes(out, fieldEphemeral, ephPub.Bytes())
	out = appendBytes(out, fieldEncryptedStatic, static)
	out = appendBytes(out, fieldEncryptedMessage, message)
	return out, nil
}

// Decrypt opens a sealed message addressed to local and checks its sender certificate
// against trustRoot at time now (see the package documentation for what is checked).
// Every failure is [ErrInvalid].
//
// now should be the time the server received the message (api.Envelope.ServerTime),
// as libsignal's clients pass it, not the time of opening: a certificate lasts a day and
// a queue holds messages for 30, so a device that was offline for two days would
// otherwise refuse everything sent while it was away.
//
// Decrypt does not know the local device's address, so it cannot refuse a message that
// claims to come from this very device (libsignal's self-send check). Such a message
// can only be made with the account's own identity private key and a certificate for
// this device; a client that knows its address should call [DecryptFor], which adds the
// check.
func Decrypt(ciphertext []byte, local *protocol.IdentityKeyPair, trustRoot *curve.PublicKey, now time.Time) (*Content, error) {
	if local == nil || trustRoot == nil {
		return nil, ErrInvalid
	}
	c, err := open(ciphertext, local)
	if err != nil {
		return nil, ErrInvalid
	}
	if err := c.Certificate.Validate(trustRoot, now); err != nil {
		return nil, ErrInvalid
	}
	return c, nil
}

// DecryptFor is [Decrypt] for the device self, and also refuses, with [ErrSelfSend], an
// authentic message whose certificate names self as its sender, as libsignal does: a
// device never has a session with itself, and processing one would corrupt its state.
func DecryptFor(ciphertext []byte, local *protocol.IdentityKeyPair, self protocol.Address,
	trustRoot *curve.PublicKey, now time.Time) (*Content, error) {
	c, err := Decrypt(ciphertext, local, trustRoot, now)
	if err != nil {
		return nil, err
	}
	if c.Sender == self {
		return nil, ErrSelfSend
	}
	return c, nil
}

// open decrypts both layers and parses the content, without validating the
// certificate chain. Its errors are for tests; Decrypt collapses them into ErrInvalid.
func open(ciphertext []byte, local *protocol.IdentityKeyPair) (*Content, error) {
	if len(ciphertext) == 0 || ciphertext[0] != Version {
		return nil, errors.New("bad version")
	}
	var ephB, static, message []byte
	err := walk(ciphertext[1:], func(num protowire.Number, typ protowire.Type, _ uint64, data []byte) error {
		if typ != protowire.BytesType {
			return errors.New("wrong wire type")
		}
		switch num {
		case fieldEphemeral:
			ephB = data
		case fieldEncryptedStatic:
			static = data
		case fieldEncryptedMessage:
			message = data
		default:
			return errors.New("unknown field")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if ephB == nil || static == nil || message == nil {
		return nil, errors.New("missing field")
	}
	eph, err := curve.NewPublicKey(ephB)
	if err != nil {
		return nil, err
	}
	localPub := local.PublicKey()
	ek, err := ephemeralKeys(local.PrivateKey(), eph, localPub, eph)
	if err != nil {
		return nil, err
	}
	senderKeyBytes, ok := unseal(ek.cipher, ek.mac, static)
	if !ok {
		return nil, errors.New("static MAC")
	}
	senderKey, err := curve.NewPublicKey(senderKeyBytes)
	if err != nil {
		return nil, err
	}
	sk, err := staticKeys(local.PrivateKey(), senderKey, ek.chain, static)
	if err != nil {
		return nil, err
	}
	usmc, ok := unseal(sk.cipher, sk.mac, message)
	if !ok {
		return nil, errors.New("message MAC")
	}
	c, err := parseContent(usmc)
	if err != nil {
		return nil, err
	}
	// The certificate must be for the key that did the agreement: otherwise anyone could
	// seal under their own key and paste in someone else's certificate.
	if subtle.ConstantTimeCompare(senderKeyBytes, c.Certificate.IdentityKey.Bytes()) != 1 {
		return nil, errors.New("certificate key does not match the sender's key")
	}
	return c, nil
}

// parseContent decodes UnidentifiedSenderMessage.Message strictly.
func parseContent(b []byte) (*Content, error) {
	c := &Content{}
	var haveType bool
	var certBytes []byte
	err := walk(b, func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error {
		switch num {
		case fieldType, fieldContentHint:
			if typ != protowire.VarintType {
				return errors.New("wrong wire type")
			}
			if num == fieldContentHint {
				// An int32 enum on the wire; libsignal keeps unknown values as they are.
				if v > math.MaxUint32 {
					return errors.New("content hint out of range")
				}
				c.ContentHint = ContentHint(v)
				return nil
			}
			t, ok := fromWireType(v)
			if !ok {
				return errors.New("unknown content type")
			}
			c.Type, haveType = t, true
		case fieldCertificate, fieldContent, fieldGroupID:
			if typ != protowire.BytesType {
				return errors.New("wrong wire type")
			}
			d := append([]byte{}, data...)
			switch num {
			case fieldCertificate:
				certBytes = d
			case fieldContent:
				c.Body = d
			default:
				c.GroupID = d
			}
		default:
			return errors.New("unknown field")
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !haveType || certBytes == nil || c.Body == nil {
		return nil, errors.New("missing field")
	}
	cert, err := certificate.ParseSender(certBytes)
	if err != nil {
		return nil, err
	}
	c.Certificate = cert
	c.Sender = protocol.Address{Name: cert.SenderUUID.String(), DeviceID: cert.DeviceID}
	return c, nil
}

type layerKeys struct {
	chain, cipher, mac []byte
}

// ephemeralKeys derives the outer layer's keys from X25519(priv, pub). The salt names
// the recipient's identity key and the ephemeral key in that order, on both sides.
func ephemeralKeys(priv *curve.PrivateKey, pub, recipient, ephemeral *curve.PublicKey) (layerKeys, error) {
	secret, err := priv.Agree(pub)
	if err != nil {
		return layerKeys{}, err
	}
	salt := make([]byte, 0, len(saltPrefix)+2*curve.PublicKeySize)
	salt = append(salt, saltPrefix...)
	salt = append(salt, recipient.Bytes()...)
	salt = append(salt, ephemeral.Bytes()...)
	okm, err := primitives.HKDF(secret, salt, nil, 96)
	if err != nil {
		return layerKeys{}, err
	}
	return layerKeys{chain: okm[:32], cipher: okm[32:64], mac: okm[64:]}, nil
}

// staticKeys derives the inner layer's keys from the two identity keys, salted with the
// outer layer's chain key and its whole ciphertext (MAC included), which binds the two
// layers together. libsignal derives 96 bytes and drops the first 32.
func staticKeys(priv *curve.PrivateKey, pub *curve.PublicKey, chain, static []byte) (layerKeys, error) {
	secret, err := priv.Agree(pub)
	if err != nil {
		return layerKeys{}, err
	}
	salt := append(append(make([]byte, 0, len(chain)+len(static)), chain...), static...)
	okm, err := primitives.HKDF(secret, salt, nil, 96)
	if err != nil {
		return layerKeys{}, err
	}
	return layerKeys{cipher: okm[32:64], mac: okm[64:]}, nil
}

// seal is libsignal's aes256_ctr_hmacsha256_encrypt: AES-256-CTR from a zero counter
// block (safe: every key here encrypts one message), then the first 10 bytes of
// HMAC-SHA256 over the ciphertext. libsignal's counter is the low 32 bits of the block;
// Go's spans all 128, which differs only after 2^32 blocks (64 GiB), far past any
// message.
func seal(key, macKey, plaintext []byte) []byte {
	out := make([]byte, len(plaintext), len(plaintext)+macSize)
	ctr(key, out, plaintext)
	return append(out, primitives.HMAC(macKey, out)[:macSize]...)
}

// unseal checks the truncated MAC in constant time, then decrypts.
func unseal(key, macKey, sealed []byte) ([]byte, bool) {
	if len(sealed) < macSize {
		return nil, false
	}
	body, tag := sealed[:len(sealed)-macSize], sealed[len(sealed)-macSize:]
	if !primitives.Equal(primitives.HMAC(macKey, body)[:macSize], tag) {
		return nil, false
	}
	out := make([]byte, len(body))
	ctr(key, out, body)
	return out, true
}

func ctr(key, dst, src []byte) {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("sealed: derived AES key has the wrong size") // broken invariant: HKDF gave 32 bytes
	}
	var iv [aes.BlockSize]byte
	cipher.NewCTR(block, iv[:]).XORKeyStream(dst, src)
}

// walk calls fn for every field of b, refusing malformed tags and values, field numbers
// seen twice, and wire types other than varint and length-delimited. data aliases b.
func walk(b []byte, fn func(num protowire.Number, typ protowire.Type, v uint64, data []byte) error) error {
	var seen uint64
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num >= 64 {
			return errors.New("unknown field")
		}
		if seen&(1<<num) != 0 {
			return errors.New("repeated field")
		}
		seen |= 1 << num
		var v uint64
		var data []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(b)
		case protowire.BytesType:
			data, n = protowire.ConsumeBytes(b)
		default:
			return errors.New("unsupported wire type")
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := fn(num, typ, v, data); err != nil {
			return err
		}
	}
	return nil
}

func appendUint(b []byte, num protowire.Number, v uint64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func appendBytes(b []byte, num protowire.Number, v []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}
