#!/usr/bin/env bash
# Regenerates every figure, curve and table of docs/lab.md (about 9 CPU-minutes in all; the
# digits data sweep is 3.5 of them).
set -euo pipefail
T="${TRIPLETLAB:-.venv/bin/tripletlab}"
D="${1:-docs/lab}"
ALL=mg,mf,mf_corrected,eta_hat,eta_hat_safe,constant,inv_sqrt,armijo,exact,nesterov
$T lab surface --seed 1 --out "$D/surface"
$T lab descent --seed 0 --rules mg,mf,eta_hat --iterations 20 --out "$D/figure2"
$T lab descent --seed 0 --rules "$ALL" --lr 1 --iterations 40 --horizon 20 --out "$D/all-rules"
$T lab descent --seed 6 --rules mg,mf,mf_corrected,eta_hat,eta_hat_safe --iterations 20 \
  --out "$D/seed6-bounds"
$T lab descent --seed 0 --alpha 0.1 --mu 0.1 --iterations 40 --horizon 20 \
  --rules mg,mf,mf_corrected,eta_hat,eta_hat_safe,armijo,exact --out "$D/alpha0.1-mu0.1"
$T lab descent --seed 0 --m 5 --d 2 --lr 1 --iterations 40 --horizon 20 \
  --rules mf,mf_corrected,eta_hat,eta_hat_safe,armijo,exact,constant --out "$D/d2-m5"
$T lab descent --data gaussian --seed 0 --n 300 --m 5 --d 2 --alpha 0.1 --mu 0.1 --lr 0.05 \
  --rules constant,inv_sqrt,armijo,exact,nesterov,sgd --iterations 100 --out "$D/gaussian"
$T lab descent --data digits --seed 0 --n 500 --d 2 --alpha 0.1 --mu 0.1 --lr 0.05 \
  --rules constant,inv_sqrt,armijo,exact,nesterov,sgd --iterations 100 --out "$D/digits"
$T lab sweep --seeds 1000 --dims 2,3,5,10,20,50 --iterations 100 --lr 1 --rules "$ALL" \
  --out "$D/sweep"
$T lab sweep --seeds 1000 --dims 2,3,5,10,20,50 --alpha 0.1 --mu 0.1 --iterations 100 --lr 1 \
  --rules "$ALL" --out "$D/sweep-alpha0.1-mu0.1"
# issue 16: the seed's sections 2.4–2.10, DCA, beyond n = d = 1, the contrastive loss
$T lab claims --seeds 1000 --dims 2,20 --out "$D/claims"
$T lab sweep --seeds 1000 --dims 2,3,5,10,20,50 --iterations 100 --lr 1 --rules dca --out "$D/sweep-dca"
$T lab data-sweep --data gaussian --seeds 10 --settings 30x1,30x2,300x2 --bias \
  --out "$D/data-sweep-gaussian"
$T lab data-sweep --data digits --seeds 5 --settings 100x1,100x2,500x2 --out "$D/data-sweep-digits"
$T lab contrastive --out "$D/contrastive"
$T lab sweep --seeds 1000 --dims 2,3,5,10,20,50 --alpha 0.1 --mu 0.1 --iterations 100 --lr 1 \
  --rules dca --out "$D/sweep-dca-alpha0.1-mu0.1"
$T lab contrastive --data digits --n 200 --out "$D/contrastive-digits"
