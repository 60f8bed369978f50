// index.postgres: chunks and their vectors into a PostgreSQL table over libpq, upserted by chunk
// id: pgvector's vector (or halfvec) where the extension is there, else real[].
#pragma once
#include "engine/node.hpp"
namespace sluice {
NodeTypeInfo index_postgres_info();
}  // namespace sluice
