// Embedders behind HTTP APIs, batched on the shared HTTP loop:
// embed.openai: any OpenAI-compatible /v1/embeddings endpoint (OpenAI, TEI, vLLM, Ollama);
// embed.gemini: Gemini's models/{model}:batchEmbedContents (at most 100 inputs a call).
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo embed_openai_info();
NodeTypeInfo embed_gemini_info();
}  // namespace sluice
