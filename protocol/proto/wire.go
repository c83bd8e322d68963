package proto

// SignalMessage is the protobuf body of a Double Ratchet message: what follows the
// version byte and precedes the 8-byte MAC.
type SignalMessage struct {
	RatchetKey      []byte // field 1, required: the sender's ratchet public key (0x05 || 32)
	Counter         uint32 // field 2, required: index in the sender's chain
	PreviousCounter uint32 // field 3: length of the sender's previous chain
	Ciphertext      []byte // field 4, required: AES-256-CBC ciphertext
	PQRatchet       []byte // field 5: SPQR message; empty when absent
	Addresses       []byte // field 6: sender and recipient service ids and devices; nil when absent
}

// Marshal appends the encoding of m to b, fields in number order as libsignal writes them.
func (m *SignalMessage) Marshal(b []byte) []byte {
	b = appendBytes(b, 1, m.RatchetKey)
	b = appendUint(b, 2, uint64(m.Counter))
	b = appendUint(b, 3, uint64(m.PreviousCounter))
	b = appendBytes(b, 4, m.Ciphertext)
	b = appendNonEmpty(b, 5, m.PQRatchet)
	if m.Addresses != nil {
		b = appendBytes(b, 6, m.Addresses)
	}
	return b
}

// Unmarshal decodes b into m.
func (m *SignalMessage) Unmarshal(b []byte) error {
	*m = SignalMessage{}
	var hasCounter bool
	err := walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			m.RatchetKey, err = f.data()
		case 2:
			m.Counter, err = f.uint32()
			hasCounter = true
		case 3:
			m.PreviousCounter, err = f.uint32()
		case 4:
			m.Ciphertext, err = f.data()
		case 5:
			m.PQRatchet, err = f.data()
		case 6:
			m.Addresses, err = f.data()
		default:
			err = unknown(f.num)
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case m.RatchetKey == nil:
		return missing("ratchet_key")
	case !hasCounter:
		return missing("counter")
	case m.Ciphertext == nil:
		return missing("ciphertext")
	}
	if len(m.PQRatchet) == 0 {
		m.PQRatchet = nil
	}
	return nil
}

// PreKeySignalMessage is the protobuf body of a session's first messages: what follows
// the version byte.
type PreKeySignalMessage struct {
	RegistrationID   uint32 // field 5
	PreKeyID         uint32 // field 1, when HasPreKeyID
	HasPreKeyID      bool
	SignedPreKeyID   uint32 // field 6, required
	KyberPreKeyID    uint32 // field 7, when HasKyberPreKeyID
	HasKyberPreKeyID bool
	KyberCiphertext  []byte // field 8: 0x08 || 1568 bytes; nil when absent
	BaseKey          []byte // field 2, required
	IdentityKey      []byte // field 3, required
	Message          []byte // field 4, required: a serialized SignalMessage with version byte and MAC
}

// Marshal appends the encoding of m to b, fields in number order as libsignal writes them.
func (m *PreKeySignalMessage) Marshal(b []byte) []byte {
	if m.HasPreKeyID {
		b = appendUint(b, 1, uint64(m.PreKeyID))
	}
	b = appendBytes(b, 2, m.BaseKey)
	b = appendBytes(b, 3, m.IdentityKey)
	b = appendBytes(b, 4, m.Message)
	b = appendUint(b, 5, uint64(m.RegistrationID))
	b = appendUint(b, 6, uint64(m.SignedPreKeyID))
	if m.HasKyberPreKeyID {
		b = appendUint(b, 7, uint64(m.KyberPreKeyID))
	}
	if m.KyberCiphertext != nil {
		b = appendBytes(b, 8, m.KyberCiphertext)
	}
	return b
}

// Unmarshal decodes b into m.
func (m *PreKeySignalMessage) Unmarshal(b []byte) error {
	*m = PreKeySignalMessage{}
	var hasSigned bool
	err := walk(b, 0, func(f field) (err error) {
		switch f.num {
		case 1:
			m.PreKeyID, err = f.uint32()
			m.HasPreKeyID = true
		case 2:
			m.BaseKey, err = f.data()
		case 3:
			m.IdentityKey, err = f.data()
		case 4:
			m.Message, err = f.data()
		case 5:
			m.RegistrationID, err = f.uint32()
		case 6:
			m.SignedPreKeyID, err = f.uint32()
			hasSigned = true
		case 7:
			m.KyberPreKeyID, err = f.uint32()
			m.HasKyberPreKeyID = true
		case 8:
			m.KyberCiphertext, err = f.data()
		default:
			err = unknown(f.num)
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case m.BaseKey == nil:
		return missing("base_key")
	case m.IdentityKey == nil:
		return missing("identity_key")
	case m.Message == nil:
		return missing("message")
	case !hasSigned:
		return missing("signed_pre_key_id")
	}
	return nil
}
