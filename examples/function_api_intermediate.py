"""Function API with intermediate reports (the Trainable page's first example).

Ported from Ray Tune by changing only the import.
"""

import atune as tune


def objective(x, a, b):
    return a * (x**0.5) + b


def trainable(config: dict):
    intermediate_score = 0
    for x in range(20):
        intermediate_score = objective(x, config["a"], config["b"])
        tune.report({"score": intermediate_score})  # one report per iteration


tuner = tune.Tuner(trainable, param_space={"a": 2, "b": 4})
results = tuner.fit()

if __name__ == "__main__":
    print(results[0].metrics["training_iteration"], results[0].metrics["score"])
