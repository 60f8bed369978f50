#!/usr/bin/env bash
# One sluice shard per MPI rank: sluice reads OMPI_COMM_WORLD_RANK/SIZE (Open MPI) or
# PMI_RANK/SIZE (MPICH, Intel MPI). No MPI library is linked: mpirun is only the launcher.
# Index, dead letters (beside db) and state go to out/ in the working directory.
#   deploy/mpi/run.sh 8 graphs/papers-backfill.json
set -euo pipefail
NP=${1:-4}
GRAPH=${2:-graphs/papers-backfill.json}
exec mpirun -np "$NP" sluice run "$GRAPH" --state out/state --resume --set 'db=out/papers-${shard}.db'
