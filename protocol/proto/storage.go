package proto

// The storage records below are Bastion's. The key records (IdentityKeyPair,
// KeyPairRecord, SignedKeyRecord) have the field layout of libsignal's storage.proto;
// the session records are modelled on its SessionStructure and RecordStructure without
// being byte-compatible. They never travel between peers; they are strict all the
// same, because a client may load them from a disk an attacker could have touched.

// ChainKey is a chain key and its index.
type ChainKey struct {
	Index uint32 // field 1
	Key   []byte // field 2
}

// MessageKey is a skipped message key, stored as the 32-byte seed it derives from.
type MessageKey struct {
	Index uint32 // field 1
	Seed  []byte // field 5 (fields 2-4 held expanded keys in older libsignal; unused)
}

// Chain is a sending or receiving chain.
type Chain struct {
	SenderRatchetKey        []byte       // field 1: 0x05 || 32
	SenderRatchetKeyPrivate []byte       // field 2: 32 bytes, sending chain only
	ChainKey                *ChainKey    // field 3
	MessageKeys             []MessageKey // field 4, repeated, newest first
}

// PendingPreKey is what an initiator keeps to resend its PreKeySignalMessage fields
// until the responder answers.
type PendingPreKey struct {
	PreKeyID       uint32 // field 1, when HasPreKeyID
	HasPreKeyID    bool
	SignedPreKeyID int32  // field 3
	BaseKey        []byte // field 2
	Timestamp      uint64 // field 4: seconds since the Unix epoch
}

// PendingKyberPreKey is the Kyber half of [PendingPreKey].
type PendingKyberPreKey struct {
	PreKeyID   uint32 // field 1
	Ciphertext []byte // field 2
}

// Session is one session state (libsignal's SessionStructure).
type Session struct {
	SessionVersion       uint32              // field 1
	LocalIdentityPublic  []byte              // field 2
	RemoteIdentityPublic []byte              // field 3
	RootKey              []byte              // field 4
	PreviousCounter      uint32              // field 5
	SenderChain          *Chain              // field 6
	ReceiverChains       []Chain             // field 7, repeated, oldest first
	PendingPreKey        *PendingPreKey      // field 9
	RemoteRegistrationID uint32              // field 10
	LocalRegistrationID  uint32              // field 11
	AliceBaseKey         []byte              // field 13
	PendingKyberPreKey   *PendingKyberPreKey // field 14
}

// Record is a session record: the current state and archived ones, newest first,
// each archived state kept encoded as a [Session] until it is needed.
type Record struct {
	Current  *Session // field 1
	Previous [][]byte // field 2, repeated
}

// IdentityKeyPair is an identity key pair, laid out as libsignal's
// IdentityKeyPairStructure.
type IdentityKeyPair struct {
	PublicKey  []byte // field 1: 0x05 || 32
	PrivateKey []byte // field 2: 32 bytes
}

// Marshal appends the encoding of k to b.
func (k *IdentityKeyPair) Marshal(b []byte) []byte {
	b = appendNonEmpty(b, 1, k.PublicKey)
	return appendNonEmpty(b, 2, k.PrivateKey)
}

// Unmarshal decodes b into k.
func (k *IdentityKeyPair) Unmarshal(b []byte) error {
	*k = IdentityKeyPair{}
	return walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			k.PublicKey, err = f.data()
		case 2:
			k.PrivateKey, err = f.data()
		default:
			err = unknown(f.num)
		}
		return err
	})
}

// KeyPairRecord is a one-time prekey, laid out as libsignal's PreKeyRecordStructure.
type KeyPairRecord struct {
	ID         uint32 // field 1
	PublicKey  []byte // field 2
	PrivateKey []byte // field 3
}

// SignedKeyRecord is a signed EC prekey or a signed Kyber prekey (libsignal's
// SignedPreKeyRecordStructure, used for both).
type SignedKeyRecord struct {
	ID         uint32 // field 1
	PublicKey  []byte // field 2
	PrivateKey []byte // field 3
	Signature  []byte // field 4
	Timestamp  uint64 // field 5, fixed64: milliseconds since the Unix epoch
}

func (c *ChainKey) marshal(b []byte) []byte {
	b = appendNonZeroUint(b, 1, uint64(c.Index))
	return appendNonEmpty(b, 2, c.Key)
}

func (c *ChainKey) unmarshal(b []byte) error {
	return walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			c.Index, err = f.uint32()
		case 2:
			c.Key, err = f.data()
		default:
			err = unknown(f.num)
		}
		return err
	})
}

func (k *MessageKey) marshal(b []byte) []byte {
	b = appendNonZeroUint(b, 1, uint64(k.Index))
	return appendNonEmpty(b, 5, k.Seed)
}

func (k *MessageKey) unmarshal(b []byte) error {
	return walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			k.Index, err = f.uint32()
		case 5:
			k.Seed, err = f.data()
		default:
			err = unknown(f.num)
		}
		return err
	})
}

func (c *Chain) marshal(b []byte) []byte {
	b = appendNonEmpty(b, 1, c.SenderRatchetKey)
	b = appendNonEmpty(b, 2, c.SenderRatchetKeyPrivate)
	if c.ChainKey != nil {
		b = appendBytes(b, 3, c.ChainKey.marshal(nil))
	}
	for i := range c.MessageKeys {
		b = appendBytes(b, 4, c.MessageKeys[i].marshal(nil))
	}
	return b
}

func (c *Chain) unmarshal(b []byte) error {
	return walk(b, 1<<4, func(f field) error {
		var err error
		switch f.num {
		case 1:
			c.SenderRatchetKey, err = f.data()
		case 2:
			c.SenderRatchetKeyPrivate, err = f.data()
		case 3:
			var raw []byte
			if raw, err = f.message(); err == nil {
				c.ChainKey = new(ChainKey)
				err = c.ChainKey.unmarshal(raw)
			}
		case 4:
			var raw []byte
			if raw, err = f.message(); err == nil {
				var k MessageKey
				err = k.unmarshal(raw)
				c.MessageKeys = append(c.MessageKeys, k)
			}
		default:
			err = unknown(f.num)
		}
		return err
	})
}

func (p *PendingPreKey) marshal(b []byte) []byte {
	if p.HasPreKeyID {
		b = appendUint(b, 1, uint64(p.PreKeyID))
	}
	b = appendNonEmpty(b, 2, p.BaseKey)
	// int32 is encoded as its sign-extended 64-bit value, as protobuf says.
	b = appendNonZeroUint(b, 3, uint64(int64(p.SignedPreKeyID)))
	return appendNonZeroUint(b, 4, p.Timestamp)
}

func (p *PendingPreKey) unmarshal(b []byte) error {
	return walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			p.PreKeyID, err = f.uint32()
			p.HasPreKeyID = true
		case 2:
			p.BaseKey, err = f.data()
		case 3:
			p.SignedPreKeyID, err = f.int32()
		case 4:
			p.Timestamp, err = f.uint64()
		default:
			err = unknown(f.num)
		}
		return err
	})
}

func (p *PendingKyberPreKey) marshal(b []byte) []byte {
	b = appendNonZeroUint(b, 1, uint64(p.PreKeyID))
	return appendNonEmpty(b, 2, p.Ciphertext)
}

func (p *PendingKyberPreKey) unmarshal(b []byte) error {
	return walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			p.PreKeyID, err = f.uint32()
		case 2:
			p.Ciphertext, err = f.data()
		default:
			err = unknown(f.num)
		}
		return err
	})
}

// Marshal appends the encoding of s to b.
func (s *Session) Marshal(b []byte) []byte {
	b = appendNonZeroUint(b, 1, uint64(s.SessionVersion))
	b = appendNonEmpty(b, 2, s.LocalIdentityPublic)
	b = appendNonEmpty(b, 3, s.RemoteIdentityPublic)
	b = appendNonEmpty(b, 4, s.RootKey)
	b = appendNonZeroUint(b, 5, uint64(s.PreviousCounter))
	if s.SenderChain != nil {
		b = appendBytes(b, 6, s.SenderChain.marshal(nil))
	}
	for i := range s.ReceiverChains {
		b = appendBytes(b, 7, s.ReceiverChains[i].marshal(nil))
	}
	if s.PendingPreKey != nil {
		b = appendBytes(b, 9, s.PendingPreKey.marshal(nil))
	}
	b = appendNonZeroUint(b, 10, uint64(s.RemoteRegistrationID))
	b = appendNonZeroUint(b, 11, uint64(s.LocalRegistrationID))
	b = appendNonEmpty(b, 13, s.AliceBaseKey)
	if s.PendingKyberPreKey != nil {
		b = appendBytes(b, 14, s.PendingKyberPreKey.marshal(nil))
	}
	return b
}

// Unmarshal decodes b into s.
func (s *Session) Unmarshal(b []byte) error {
	*s = Session{}
	return walk(b, 1<<7, func(f field) error {
		var err error
		var raw []byte
		switch f.num {
		case 1:
			s.SessionVersion, err = f.uint32()
		case 2:
			s.LocalIdentityPublic, err = f.data()
		case 3:
			s.RemoteIdentityPublic, err = f.data()
		case 4:
			s.RootKey, err = f.data()
		case 5:
			s.PreviousCounter, err = f.uint32()
		case 6:
			if raw, err = f.message(); err == nil {
				s.SenderChain = new(Chain)
				err = s.SenderChain.unmarshal(raw)
			}
		case 7:
			if raw, err = f.message(); err == nil {
				var c Chain
				err = c.unmarshal(raw)
				s.ReceiverChains = append(s.ReceiverChains, c)
			}
		case 9:
			if raw, err = f.message(); err == nil {
				s.PendingPreKey = new(PendingPreKey)
				err = s.PendingPreKey.unmarshal(raw)
			}
		case 10:
			s.RemoteRegistrationID, err = f.uint32()
		case 11:
			s.LocalRegistrationID, err = f.uint32()
		case 13:
			s.AliceBaseKey, err = f.data()
		case 14:
			if raw, err = f.message(); err == nil {
				s.PendingKyberPreKey = new(PendingKyberPreKey)
				err = s.PendingKyberPreKey.unmarshal(raw)
			}
		default:
			err = unknown(f.num)
		}
		return err
	})
}

// Marshal appends the encoding of r to b.
func (r *Record) Marshal(b []byte) []byte {
	if r.Current != nil {
		b = appendBytes(b, 1, r.Current.Marshal(nil))
	}
	for _, p := range r.Previous {
		b = appendBytes(b, 2, p)
	}
	return b
}

// Unmarshal decodes b into r. Archived states are checked to decode, then kept encoded.
func (r *Record) Unmarshal(b []byte) error {
	*r = Record{}
	return walk(b, 1<<2, func(f field) error {
		var err error
		var raw []byte
		switch f.num {
		case 1:
			if raw, err = f.message(); err == nil {
				r.Current = new(Session)
				err = r.Current.Unmarshal(raw)
			}
		case 2:
			if raw, err = f.data(); err == nil {
				var s Session
				if err = s.Unmarshal(raw); err == nil {
					r.Previous = append(r.Previous, raw)
				}
			}
		default:
			err = unknown(f.num)
		}
		return err
	})
}

// Marshal appends the encoding of k to b.
func (k *KeyPairRecord) Marshal(b []byte) []byte {
	b = appendNonZeroUint(b, 1, uint64(k.ID))
	b = appendNonEmpty(b, 2, k.PublicKey)
	return appendNonEmpty(b, 3, k.PrivateKey)
}

// Unmarshal decodes b into k.
func (k *KeyPairRecord) Unmarshal(b []byte) error {
	*k = KeyPairRecord{}
	return walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			k.ID, err = f.uint32()
		case 2:
			k.PublicKey, err = f.data()
		case 3:
			k.PrivateKey, err = f.data()
		default:
			err = unknown(f.num)
		}
		return err
	})
}

// Marshal appends the encoding of k to b.
func (k *SignedKeyRecord) Marshal(b []byte) []byte {
	b = appendNonZeroUint(b, 1, uint64(k.ID))
	b = appendNonEmpty(b, 2, k.PublicKey)
	b = appendNonEmpty(b, 3, k.PrivateKey)
	b = appendNonEmpty(b, 4, k.Signature)
	if k.Timestamp != 0 {
		b = appendFixed64(b, 5, k.Timestamp)
	}
	return b
}

// Unmarshal decodes b into k.
func (k *SignedKeyRecord) Unmarshal(b []byte) error {
	*k = SignedKeyRecord{}
	return walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			k.ID, err = f.uint32()
		case 2:
			k.PublicKey, err = f.data()
		case 3:
			k.PrivateKey, err = f.data()
		case 4:
			k.Signature, err = f.data()
		case 5:
			k.Timestamp, err = f.fixed64()
		default:
			err = unknown(f.num)
		}
		return err
	})
}

// Bundle is a prekey bundle as a client may cache it (Bastion's own encoding; the
// server API carries bundles in its own wire types).
type Bundle struct {
	RegistrationID        uint32 // field 1
	DeviceID              uint32 // field 2
	PreKeyID              uint32 // field 3
	PreKey                []byte // field 4: 0x05 || 32, absent without a one-time prekey
	SignedPreKeyID        uint32 // field 5
	SignedPreKey          []byte // field 6
	SignedPreKeySignature []byte // field 7
	KyberPreKeyID         uint32 // field 8
	KyberPreKey           []byte // field 9
	KyberPreKeySignature  []byte // field 10
	IdentityKey           []byte // field 11
}

// Marshal appends the encoding of k to b.
func (k *Bundle) Marshal(b []byte) []byte {
	b = appendNonZeroUint(b, 1, uint64(k.RegistrationID))
	b = appendNonZeroUint(b, 2, uint64(k.DeviceID))
	b = appendNonZeroUint(b, 3, uint64(k.PreKeyID))
	b = appendNonEmpty(b, 4, k.PreKey)
	b = appendNonZeroUint(b, 5, uint64(k.SignedPreKeyID))
	b = appendNonEmpty(b, 6, k.SignedPreKey)
	b = appendNonEmpty(b, 7, k.SignedPreKeySignature)
	b = appendNonZeroUint(b, 8, uint64(k.KyberPreKeyID))
	b = appendNonEmpty(b, 9, k.KyberPreKey)
	b = appendNonEmpty(b, 10, k.KyberPreKeySignature)
	return appendNonEmpty(b, 11, k.IdentityKey)
}

// Unmarshal decodes b into k.
func (k *Bundle) Unmarshal(b []byte) error {
	*k = Bundle{}
	return walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			k.RegistrationID, err = f.uint32()
		case 2:
			k.DeviceID, err = f.uint32()
		case 3:
			k.PreKeyID, err = f.uint32()
		case 4:
			k.PreKey, err = f.data()
		case 5:
			k.SignedPreKeyID, err = f.uint32()
		case 6:
			k.SignedPreKey, err = f.data()
		case 7:
			k.SignedPreKeySignature, err = f.data()
		case 8:
			k.KyberPreKeyID, err = f.uint32()
		case 9:
			k.KyberPreKey, err = f.data()
		case 10:
			k.KyberPreKeySignature, err = f.data()
		case 11:
			k.IdentityKey, err = f.data()
		default:
			err = unknown(f.num)
		}
		return err
	})
}
