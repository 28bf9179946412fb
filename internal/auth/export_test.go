package auth

// SignForTest signs claims with the service's current signing key, naming kid in the
// header (the key's own id when kid is empty), so that tests can forge tokens that
// only a chosen claim makes invalid.
func SignForTest(s *Service, claims Claims, kid string) (string, error) {
	key, err := s.keys.signer()
	if err != nil {
		return "", err
	}
	if kid == "" {
		kid = key.KID
	}
	k := &keyRing{keys: []SigningKey{{KID: kid, Private: key.Private, CreatedAt: key.CreatedAt}}}
	return k.sign(claims)
}

// CurrentKID returns the id of the key that signs new tokens.
func CurrentKID(s *Service) string {
	key, _ := s.keys.signer()
	return key.KID
}

// HashCounts returns the argon2id runs in flight, the most there ever were at once,
// and the requests waiting for a hashing slot.
func HashCounts(s *Service) (running, peak, waiting int) { return s.hashes.counts() }

// SetHashHook has f called inside each argon2id run, before it hashes; set it before
// serving.
func SetHashHook(s *Service, f func()) { s.hashes.hook = f }

// HandleUserRegister exposes the POST /auth/register handler, not wrapped by
// Keys.Wrap, so that the crash tests can stop a process between the create and its
// answer.
var HandleUserRegister = handleUserRegister
