// Session-ticket keys: AES-256-CBC + HMAC-SHA256, the current key and the previous one.
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstring>
#include <stdexcept>

#include "net/tls/tls.hpp"

namespace weir::net::tls {
namespace {

template <typename Key>
void random_key(Key& k) {
  if (RAND_bytes(k.name, sizeof k.name) != 1 || RAND_bytes(k.aes, sizeof k.aes) != 1 ||
      RAND_bytes(k.hmac, sizeof k.hmac) != 1)
    throw std::runtime_error("RAND_bytes failed: no entropy for TLS ticket keys");
}

bool key_mac(EVP_MAC_CTX* mac, unsigned char* hmac, size_t len) {
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, hmac, len),
                         OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  return EVP_MAC_CTX_set_params(mac, params) == 1;
}

}  // namespace

TicketKeys::TicketKeys() {
  random_key(current_);
}

void TicketKeys::rotate() {
  Key next{};
  random_key(next);
  std::lock_guard lock(mu_);
  previous_ = current_;
  has_previous_ = true;
  current_ = next;
  ++rotations_;
}

uint64_t TicketKeys::rotations() const {
  std::lock_guard lock(mu_);
  return rotations_;
}

int TicketKeys::callback(unsigned char key_name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                         EVP_MAC_CTX* mac, int encrypt) {
  Key key;
  int result = 1;
  if (encrypt) {
    {
      std::lock_guard lock(mu_);
      key = current_;
    }
    if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1) return -1;
    std::memcpy(key_name, key.name, sizeof key.name);
    if (EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) return -1;
  } else {
    {
      std::lock_guard lock(mu_);
      if (std::memcmp(key_name, current_.name, sizeof current_.name) == 0) {
        key = current_;
      } else if (has_previous_ && std::memcmp(key_name, previous_.name, sizeof key.name) == 0) {
        key = previous_;
        result = 2;  // resume, and issue a ticket under the current key
      } else {
        return 0;  // unknown key: a full handshake
      }
    }
    if (EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), nullptr, key.aes, iv) != 1) return -1;
  }
  if (!key_mac(mac, key.hmac, sizeof key.hmac)) return -1;
  OPENSSL_cleanse(&key, sizeof key);
  return result;
}

}  // namespace weir::net::tls
