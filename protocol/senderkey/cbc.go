package senderkey

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"errors"
)

var errDecrypt = errors.New("cbc: decryption failed")

// encryptCBC is AES-256-CBC with PKCS#7 padding, as libsignal's signal_crypto does.
func encryptCBC(key, iv, pt []byte) []byte {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("senderkey: AES key of the wrong size: " + err.Error())
	}
	pad := aes.BlockSize - len(pt)%aes.BlockSize
	buf := make([]byte, len(pt)+pad)
	copy(buf, pt)
	for i := len(pt); i < len(buf); i++ {
		buf[i] = byte(pad)
	}
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(buf, buf)
	return buf
}

// decryptCBC reverses encryptCBC. It checks the padding without branching on its bytes.
func decryptCBC(key, iv, ct []byte) ([]byte, error) {
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, errDecrypt
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic("senderkey: AES key of the wrong size: " + err.Error())
	}
	buf := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(buf, ct)
	pad := int(buf[len(buf)-1])
	good := subtle.ConstantTimeLessOrEq(1, pad) & subtle.ConstantTimeLessOrEq(pad, aes.BlockSize)
	for i := 1; i <= aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, pad)
		good &= subtle.ConstantTimeSelect(inPad, subtle.ConstantTimeByteEq(buf[len(buf)-i], byte(pad)), 1)
	}
	if good != 1 {
		return nil, errDecrypt
	}
	return buf[:len(buf)-pad], nil
}
