// The `compression:` filter: negotiation, the head's edits and the compressor, per response.
#include "config/config.hpp"
#include "proxy/compression.hpp"

namespace weir::proxy {
namespace {

class CompressionFilter final : public Filter {
 public:
  explicit CompressionFilter(const config::Compression& c) {
    for (const auto& name : c.algorithms)
      if (auto e = parse_encoding(name)) preference_.push_back(*e);
    rules_.types = c.types;
    rules_.min_size = c.min_size;
    levels_ = CompressionLevels{c.gzip_level, c.br_level, c.zstd_level};
  }

  std::unique_ptr<BodyFilter> on_response_body(ResponseOut& h, const RequestFacts& r) override {
    if (h.local || !should_compress(h, r.method, rules_)) return nullptr;
    std::string_view accept = r.accept_encoding;
    std::span<const std::string_view> fields(&accept, accept.empty() ? 0 : 1);
    Encoding e = choose_encoding(fields, preference_);
    std::unique_ptr<Compressor> c;
    if (e != Encoding::Identity) {
      uint64_t hint = h.body == http::BodyKind::ContentLength ? h.content_length : 0;
      c = make_compressor(e, levels_.of(e), hint);
    }
    if (!c) {
      // Sent as it is, but another client would get it compressed: caches must tell them apart.
      add_vary_accept_encoding(h, *h.edits);
      return nullptr;
    }
    edit_head_for_compression(h, e, *h.edits);
    return c;
  }

 private:
  std::vector<Encoding> preference_;
  CompressionRules rules_;
  CompressionLevels levels_;
};

}  // namespace

std::unique_ptr<Filter> make_compression_filter(const config::Compression& c) {
  return std::make_unique<CompressionFilter>(c);
}

}  // namespace weir::proxy
