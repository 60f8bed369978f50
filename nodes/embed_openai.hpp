// embed.openai: embeddings from any OpenAI-compatible /v1/embeddings endpoint (OpenAI, TEI,
// vLLM, Ollama), batched, on the shared HTTP loop.
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo embed_openai_info();
}
