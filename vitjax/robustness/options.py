"""The knobs of `--mode robustness`, set on the command line as `--robustness.<key>=...`.

Light on purpose (ml_collections only): the command line defines its flags from it before parsing.
"""
import ml_collections

from vitjax.robustness.corruptions import CORRUPTIONS, SEVERITIES


def default_options() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.corruptions = CORRUPTIONS      # ImageNet-C corruption names; () skips the sweep
    o.severities = SEVERITIES        # 1 (mild) .. 5 (severe)
    o.epsilons = (0.5, 1.0, 2.0, 4.0, 8.0)  # attack budgets in pixel levels (8 = 8/255); () skips
    o.pgd_steps = 10                 # PGD iterations (random start); its step is step_ratio * eps / steps
    o.pgd_step_ratio = 2.5
    o.calibration_bins = 15          # equal-width confidence bins of the ECE
    o.temperature_scaling = True     # fit a temperature on the validation split, report it on `--split`
    o.source = ""                    # cross-domain: another data source (its class names are matched)
    o.baseline = ""                  # another workdir with a robustness report: relative mCE against it
    o.seed = 0                       # corruption noise and PGD starts
    return o
