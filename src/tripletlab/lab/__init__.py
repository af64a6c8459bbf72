"""The optimisation lab: gradient descent on the triplet loss for linear embeddings.

Reproduces, corrects and extends L. Jaffe's EECS227C analysis (seed 003; findings in
docs/lab.md): ``objective`` (hinge, DC parts, smoothed loss, exact gradients and Hessians),
``problem`` (a batch of instances), ``instances`` (the seed's RNG protocol, labelled data),
``step_rules`` (1/M_g, 1/M_f, η̂, safeguarded η̂, constant, 1/√t, Armijo, exact line search),
``descent`` (the driver, with Nesterov and SGD), ``smoothness`` (true local smoothness),
``experiments`` / ``figures`` / ``summary`` / ``outputs`` (the CLI's ``tripletlab lab``).

Example:
    >>> from tripletlab.lab import run_descent, seed_instance
    >>> problem, w0 = seed_instance(0)
    >>> int(run_descent(problem, w0, "eta_hat_safe", 10).iterations_to(1e-6)[0])
    8
"""

from tripletlab.lab.descent import Trajectory, run_descent
from tripletlab.lab.experiments import descent_experiment, surface_experiment, sweep_experiment
from tripletlab.lab.instances import digits_instance, gaussian_instance, seed_batch, seed_instance
from tripletlab.lab.problem import TripletProblem
from tripletlab.lab.smoothness import local_smoothness, local_smoothness_g
from tripletlab.lab.step_rules import ALL_RULES, STEP_RULES, StepSettings, eta_hat_iterations

__all__ = [
    "ALL_RULES",
    "STEP_RULES",
    "StepSettings",
    "Trajectory",
    "TripletProblem",
    "descent_experiment",
    "digits_instance",
    "eta_hat_iterations",
    "gaussian_instance",
    "local_smoothness",
    "local_smoothness_g",
    "run_descent",
    "seed_batch",
    "seed_instance",
    "surface_experiment",
    "sweep_experiment",
]
