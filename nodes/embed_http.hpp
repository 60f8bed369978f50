// Embedders behind HTTP APIs, batched on the shared HTTP loop:
// embed.openai: any OpenAI-compatible /v1/embeddings endpoint (OpenAI, TEI, vLLM, Ollama);
// embed.gemini: Gemini's models/{model}:batchEmbedContents (at most 100 inputs a call).
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo embed_openai_info();
NodeTypeInfo embed_gemini_info();
// The vector the embed.openai or embed.gemini node `init` describes gives `text`, through its
// endpoint and key, now (blocking, with the node's retries): `sluice search` embeds a query so.
// Gemini is asked for a RETRIEVAL_QUERY embedding where the node asks RETRIEVAL_DOCUMENT.
// Throws std::runtime_error (the HTTP failure or the malformed answer).
std::vector<float> embed_query_http(const NodeInit& init, const std::string& text);
}  // namespace sluice
