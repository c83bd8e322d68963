package libsignal

// Typed wrappers for the peer's main ops. Every other op (see peer.mjs) is
// reachable through [Peer.Call]. []byte fields travel as standard base64,
// which is what encoding/json does with them.

// Address is a libsignal ProtocolAddress: an account id (a UUID string) and a
// device id.
type Address struct {
	Name     string `json:"name"`
	DeviceID uint32 `json:"device_id"`
}

// Bundle holds the public fields of a PreKeyBundle. Keys are libsignal's
// serialized form (EC: 0x05 || 32 bytes; Kyber-1024: 0x08 || 1568 bytes).
// A bundle with an empty PreKeyPublic has no one-time EC prekey.
type Bundle struct {
	RegistrationID        uint32 `json:"registration_id"`
	DeviceID              uint32 `json:"device_id"`
	PreKeyID              uint32 `json:"prekey_id"`
	PreKeyPublic          []byte `json:"prekey_public,omitempty"`
	SignedPreKeyID        uint32 `json:"signed_prekey_id"`
	SignedPreKeyPublic    []byte `json:"signed_prekey_public"`
	SignedPreKeySignature []byte `json:"signed_prekey_signature"`
	KyberPreKeyID         uint32 `json:"kyber_prekey_id"`
	KyberPreKeyPublic     []byte `json:"kyber_prekey_public"`
	KyberPreKeySignature  []byte `json:"kyber_prekey_signature"`
	IdentityKey           []byte `json:"identity_key"`
}

// NewPartyArgs creates a party. A zero RegistrationID picks a random one; an
// empty IdentityPrivate generates a fresh identity key pair.
type NewPartyArgs struct {
	Party           string `json:"party"`
	RegistrationID  uint32 `json:"registration_id,omitempty"`
	IdentityPrivate []byte `json:"identity_private,omitempty"`
}

// Party describes a party's identity. IdentityPrivate is the 32-byte
// Curve25519 scalar, filled only by [Peer.Identity].
type Party struct {
	IdentityKey     []byte `json:"identity_key"`
	IdentityPrivate []byte `json:"identity_private,omitempty"`
	RegistrationID  uint32 `json:"registration_id"`
}

// BundleArgs asks a party for a fresh bundle. The party stores the private
// halves under these ids; with NoPreKey the bundle has no one-time EC prekey.
type BundleArgs struct {
	DeviceID       uint32 `json:"device_id"`
	PreKeyID       uint32 `json:"prekey_id"`
	SignedPreKeyID uint32 `json:"signed_prekey_id"`
	KyberPreKeyID  uint32 `json:"kyber_prekey_id"`
	NoPreKey       bool   `json:"no_prekey,omitempty"`
}

// Message is a serialized 1:1 ciphertext and its type.
type Message struct {
	Type       MessageType `json:"type"`
	Ciphertext []byte      `json:"ciphertext"`
}

// SessionInfo describes a party's session record for one address. The
// registration ids are zero unless HasCurrentState.
type SessionInfo struct {
	Exists               bool   `json:"exists"`
	HasCurrentState      bool   `json:"has_current_state"`
	LocalRegistrationID  uint32 `json:"local_registration_id"`
	RemoteRegistrationID uint32 `json:"remote_registration_id"`
	Record               []byte `json:"record"` // libsignal's serialized SessionRecord
}

// FingerprintArgs are the inputs of a safety number. Signal uses version 2
// with 16-byte ACI identifiers and 5200 iterations.
type FingerprintArgs struct {
	Version    int    `json:"version"`
	Iterations int    `json:"iterations"`
	LocalID    []byte `json:"local_id"`
	LocalKey   []byte `json:"local_key"`
	RemoteID   []byte `json:"remote_id"`
	RemoteKey  []byte `json:"remote_key"`
}

// Fingerprint is a safety number: the 60-digit string and the scannable
// (QR code) encoding.
type Fingerprint struct {
	Displayable string `json:"displayable"`
	Scannable   []byte `json:"scannable"`
}

// BenchResult is libsignal's measured cost of one benchmark operation.
type BenchResult struct {
	N       int   `json:"n"`
	NsPerOp int64 `json:"ns_per_op"`
}

// Benchmark kinds for [Peer.Bench].
const (
	BenchOneChain    = "one_chain"    // encrypt+decrypt of 256 bytes, one direction: one chain step
	BenchRatchetStep = "ratchet_step" // encrypt+decrypt of 256 bytes, alternating: a DH ratchet step each
	BenchSetup       = "setup"        // processPreKeyBundle + first encrypt (sender side)
	BenchGroup       = "group"        // sender-key encrypt+decrypt of 256 bytes
)

type partyArgs struct {
	Party string `json:"party"`
}

type addrArgs struct {
	Party   string  `json:"party"`
	Address Address `json:"address"`
}

// NewParty creates a party with its own in-memory stores.
func (p *Peer) NewParty(args NewPartyArgs) (Party, error) {
	var r Party
	err := p.Call("new_party", args, &r)
	return r, err
}

// Identity returns a party's identity key pair and registration id.
func (p *Peer) Identity(party string) (Party, error) {
	var r Party
	err := p.Call("identity", partyArgs{party}, &r)
	return r, err
}

// GenerateBundle makes and stores fresh prekeys for party and returns the
// public bundle, signed with the party's identity key.
func (p *Peer) GenerateBundle(party string, args BundleArgs) (Bundle, error) {
	var r Bundle
	err := p.Call("generate_bundle", struct {
		Party string `json:"party"`
		BundleArgs
	}{party, args}, &r)
	return r, err
}

// ProcessBundle starts a session from party to addr with libsignal's
// processPreKeyBundle, which checks both prekey signatures.
func (p *Peer) ProcessBundle(party string, addr Address, b Bundle) error {
	return p.Call("process_bundle", struct {
		Party   string  `json:"party"`
		Address Address `json:"address"`
		Bundle  Bundle  `json:"bundle"`
	}{party, addr, b}, nil)
}

// Encrypt encrypts plaintext from party to addr with libsignal's signalEncrypt.
func (p *Peer) Encrypt(party string, to Address, plaintext []byte) (Message, error) {
	var r Message
	err := p.Call("encrypt", struct {
		Party     string  `json:"party"`
		Address   Address `json:"address"`
		Plaintext []byte  `json:"plaintext"`
	}{party, to, plaintext}, &r)
	return r, err
}

// Decrypt decrypts m, received by party from addr, with libsignal's
// signalDecrypt or signalDecryptPreKey according to m.Type.
func (p *Peer) Decrypt(party string, from Address, m Message) ([]byte, error) {
	var r struct {
		Plaintext []byte `json:"plaintext"`
	}
	err := p.Call("decrypt", struct {
		Party      string      `json:"party"`
		Address    Address     `json:"address"`
		Type       MessageType `json:"type"`
		Ciphertext []byte      `json:"ciphertext"`
	}{party, from, m.Type, m.Ciphertext}, &r)
	return r.Plaintext, err
}

// SessionInfo reports on party's session with addr.
func (p *Peer) SessionInfo(party string, addr Address) (SessionInfo, error) {
	var r SessionInfo
	err := p.Call("session_info", addrArgs{party, addr}, &r)
	return r, err
}

type senderArgs struct {
	Party          string  `json:"party"`
	Sender         Address `json:"sender"`
	DistributionID string  `json:"distribution_id,omitempty"`
	SKDM           []byte  `json:"skdm,omitempty"`
	Plaintext      []byte  `json:"plaintext,omitempty"`
	Ciphertext     []byte  `json:"ciphertext,omitempty"`
}

// SenderKeyCreate returns a SenderKeyDistributionMessage for sender's chain
// in the group distributionID (a UUID), creating the chain if needed.
func (p *Peer) SenderKeyCreate(party string, sender Address, distributionID string) ([]byte, error) {
	var r struct {
		SKDM []byte `json:"skdm"`
	}
	err := p.Call("sk_create", senderArgs{Party: party, Sender: sender, DistributionID: distributionID}, &r)
	return r.SKDM, err
}

// SenderKeyProcess stores the sender key a SenderKeyDistributionMessage from
// sender carries.
func (p *Peer) SenderKeyProcess(party string, sender Address, skdm []byte) error {
	return p.Call("sk_process", senderArgs{Party: party, Sender: sender, SKDM: skdm}, nil)
}

// GroupEncrypt encrypts plaintext as sender for the group distributionID and
// returns the serialized SenderKeyMessage.
func (p *Peer) GroupEncrypt(party string, sender Address, distributionID string, plaintext []byte) ([]byte, error) {
	var r struct {
		Ciphertext []byte `json:"ciphertext"`
	}
	// Its own argument type: senderArgs omits an empty plaintext, and an empty group
	// message is a case worth sending.
	args := struct {
		Party          string  `json:"party"`
		Sender         Address `json:"sender"`
		DistributionID string  `json:"distribution_id"`
		Plaintext      []byte  `json:"plaintext"`
	}{party, sender, distributionID, append([]byte{}, plaintext...)}
	err := p.Call("group_encrypt", args, &r)
	return r.Ciphertext, err
}

// GroupDecrypt decrypts a SenderKeyMessage from sender.
func (p *Peer) GroupDecrypt(party string, sender Address, ciphertext []byte) ([]byte, error) {
	var r struct {
		Plaintext []byte `json:"plaintext"`
	}
	err := p.Call("group_decrypt", senderArgs{Party: party, Sender: sender, Ciphertext: ciphertext}, &r)
	return r.Plaintext, err
}

// Fingerprint computes a safety number with libsignal.
func (p *Peer) Fingerprint(args FingerprintArgs) (Fingerprint, error) {
	var r Fingerprint
	err := p.Call("fingerprint", args, &r)
	return r, err
}

// KeyPair generates a Curve25519 key pair: the 32-byte private scalar and the
// 33-byte serialized public key.
func (p *Peer) KeyPair() (private, public []byte, err error) {
	var r struct {
		Private []byte `json:"private"`
		Public  []byte `json:"public"`
	}
	err = p.Call("keypair_generate", nil, &r)
	return r.Private, r.Public, err
}

// Sign makes libsignal's XEdDSA signature of message.
func (p *Peer) Sign(private, message []byte) ([]byte, error) {
	var r struct {
		Signature []byte `json:"signature"`
	}
	err := p.Call("xeddsa_sign", struct {
		PrivateKey []byte `json:"private_key"`
		Message    []byte `json:"message"`
	}{private, message}, &r)
	return r.Signature, err
}

// Verify checks an XEdDSA signature with libsignal.
func (p *Peer) Verify(public, message, signature []byte) (bool, error) {
	var r struct {
		Valid bool `json:"valid"`
	}
	err := p.Call("xeddsa_verify", struct {
		PublicKey []byte `json:"public_key"`
		Message   []byte `json:"message"`
		Signature []byte `json:"signature"`
	}{public, message, signature}, &r)
	return r.Valid, err
}

// Agree computes the X25519 shared secret of private and public with libsignal.
func (p *Peer) Agree(private, public []byte) ([]byte, error) {
	var r struct {
		SharedSecret []byte `json:"shared_secret"`
	}
	err := p.Call("agree", struct {
		PrivateKey []byte `json:"private_key"`
		PublicKey  []byte `json:"public_key"`
	}{private, public}, &r)
	return r.SharedSecret, err
}

// Bench runs n iterations of a libsignal-against-libsignal benchmark of the
// given kind (BenchOneChain, ...) inside the peer.
func (p *Peer) Bench(kind string, n int) (BenchResult, error) {
	var r BenchResult
	err := p.Call("bench", struct {
		Kind string `json:"kind"`
		N    int    `json:"n"`
	}{kind, n}, &r)
	return r, err
}
