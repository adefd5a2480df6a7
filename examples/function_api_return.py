"""Function API returning the final metrics (the Trainable page's third example).

A returned dict is one more report. Ported from Ray Tune by changing only the import.
"""

import atune as tune


def objective(x, a, b):
    return a * (x**0.5) + b


def trainable(config: dict):
    final_score = 0
    for x in range(20):
        final_score = objective(x, config["a"], config["b"])

    return {"score": final_score}  # returned metrics are reported too


tuner = tune.Tuner(trainable, param_space={"a": 2, "b": 4})
results = tuner.fit()

if __name__ == "__main__":
    print(results[0].metrics["training_iteration"], results[0].metrics["score"])
