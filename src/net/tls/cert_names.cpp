// The DNS names of a certificate, and matching an SNI name against them.
#include <openssl/x509v3.h>

#include <algorithm>
#include <cctype>

#include "net/tls/internal.hpp"

namespace weir::net::tls::detail {
namespace {

std::string lower(const unsigned char* data, int len) {
  std::string out(reinterpret_cast<const char*>(data), static_cast<size_t>(std::max(len, 0)));
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::vector<std::string> certificate_names(X509* cert) {
  std::vector<std::string> names;
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
      if (gn->type != GEN_DNS) continue;
      const ASN1_IA5STRING* s = gn->d.dNSName;
      names.push_back(lower(ASN1_STRING_get0_data(s), ASN1_STRING_length(s)));
    }
    GENERAL_NAMES_free(sans);
  }
  if (!names.empty()) return names;
  X509_NAME* subject = X509_get_subject_name(cert);
  for (int i = -1; (i = X509_NAME_get_index_by_NID(subject, NID_commonName, i)) >= 0;) {
    const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, s);
    if (len >= 0) names.push_back(lower(utf8, len));
    OPENSSL_free(utf8);
  }
  return names;
}

bool name_matches(std::string_view pattern, std::string_view name) {
  if (pattern.empty() || name.empty()) return false;
  if (pattern.size() > 2 && pattern.substr(0, 2) == "*.") {
    std::string_view rest = pattern.substr(1);  // ".example.com"
    if (name.size() <= rest.size()) return false;
    size_t label = name.size() - rest.size();  // the leftmost label: no dot, not empty
    return name.substr(label) == rest && name.substr(0, label).find('.') == std::string_view::npos;
  }
  return pattern == name;
}

}  // namespace weir::net::tls::detail
