import Foundation

/// A linear classifier with a logistic link, fitted by batch gradient descent with L2
/// regularisation (callers keep each feature in about [0, 1], so no scaling is needed).
/// Small on purpose: the classifiers built on it (injected instructions, the router) are trained
/// offline on labelled sets kept in the repository and ship as a list of weights.
public struct LogisticRegression: Sendable, Equatable {
    /// One weight per feature, then the bias.
    public var weights: [Double]

    public init(weights: [Double]) {
        self.weights = weights
    }

    public var featureCount: Int { self.weights.count - 1 }

    /// The probability of the positive class.
    public func probability(_ features: [Double]) -> Double {
        precondition(features.count == self.featureCount, "one value per feature")
        var sum = self.weights[self.featureCount]
        for index in 0..<features.count { sum += self.weights[index] * features[index] }
        return 1 / (1 + exp(-sum))
    }

    /// Fits to `examples`; `positiveWeight` scales the loss of positive examples (class balance).
    /// The loop runs over one contiguous copy of the features through unsafe buffers: training
    /// runs in debug builds too (the tests refit the shipped models), where bounds-checked arrays
    /// would make it several times slower. The arithmetic is the plain loop's, in the same order.
    public static func fit(
        _ examples: [(features: [Double], label: Bool)], l2: Double = 0.001, learningRate: Double = 0.5,
        iterations: Int = 4000, positiveWeight: Double = 1
    ) -> LogisticRegression {
        guard let width = examples.first?.features.count else { return LogisticRegression(weights: [0]) }
        precondition(examples.allSatisfy { $0.features.count == width }, "one value per feature")
        let matrix = examples.flatMap(\.features)
        let targets = examples.map { $0.label ? 1.0 : 0.0 }
        let scales = examples.map { $0.label ? positiveWeight : 1 }
        let total = scales.reduce(0, +)
        var weights = [Double](repeating: 0, count: width + 1)
        var gradient = [Double](repeating: 0, count: width + 1)
        matrix.withUnsafeBufferPointer { matrix in
            weights.withUnsafeMutableBufferPointer { weights in
                gradient.withUnsafeMutableBufferPointer { gradient in
                    for _ in 0..<iterations {
                        for index in 0...width { gradient[index] = 0 }
                        for row in 0..<targets.count {
                            let features = UnsafeBufferPointer(rebasing: matrix[(row * width)..<((row + 1) * width)])
                            var sum = weights[width]
                            for index in 0..<width { sum += weights[index] * features[index] }
                            let error = (1 / (1 + exp(-sum)) - targets[row]) * scales[row]
                            for index in 0..<width { gradient[index] += error * features[index] }
                            gradient[width] += error
                        }
                        for index in 0...width {
                            let penalty = index < width ? l2 * weights[index] : 0
                            weights[index] -= learningRate * (gradient[index] / total + penalty)
                        }
                    }
                }
            }
        }
        return LogisticRegression(weights: weights)
    }

    /// `folds`-fold cross-validation: each example is judged by a model fitted without its fold.
    /// Folds are assigned by position (`index % folds`), so the split does not depend on the run.
    public static func crossValidate(
        _ examples: [(features: [Double], label: Bool)], folds: Int, threshold: Double = 0.5,
        fit: ([(features: [Double], label: Bool)]) -> LogisticRegression
    ) -> BinaryConfusion {
        var confusion = BinaryConfusion()
        let scores = Self.outOfFoldScores(examples, folds: folds, fit: fit)
        for (score, example) in zip(scores, examples) {
            confusion.add(predicted: score >= threshold, actual: example.label)
        }
        return confusion
    }

    /// Each example's probability from the model fitted without its fold (folds by position).
    public static func outOfFoldScores(
        _ examples: [(features: [Double], label: Bool)], folds: Int,
        fit: ([(features: [Double], label: Bool)]) -> LogisticRegression
    ) -> [Double] {
        var scores = [Double](repeating: 0, count: examples.count)
        for fold in 0..<folds {
            let model = fit(examples.indices.filter { $0 % folds != fold }.map { examples[$0] })
            for index in examples.indices where index % folds == fold {
                scores[index] = model.probability(examples[index].features)
            }
        }
        return scores
    }
}

/// Counts of a binary classifier's verdicts against labels.
public struct BinaryConfusion: Sendable, Equatable {
    public var truePositives = 0
    public var falsePositives = 0
    public var trueNegatives = 0
    public var falseNegatives = 0

    public init() {}

    public mutating func add(predicted: Bool, actual: Bool) {
        switch (predicted, actual) {
        case (true, true): self.truePositives += 1
        case (true, false): self.falsePositives += 1
        case (false, false): self.trueNegatives += 1
        case (false, true): self.falseNegatives += 1
        }
    }

    public var precision: Double {
        let flagged = self.truePositives + self.falsePositives
        return flagged == 0 ? 1 : Double(self.truePositives) / Double(flagged)
    }

    public var recall: Double {
        let positives = self.truePositives + self.falseNegatives
        return positives == 0 ? 1 : Double(self.truePositives) / Double(positives)
    }

    public var accuracy: Double {
        let all = self.truePositives + self.falsePositives + self.trueNegatives + self.falseNegatives
        return all == 0 ? 1 : Double(self.truePositives + self.trueNegatives) / Double(all)
    }
}

/// Labelled sets are JSON Lines: one object per line, blank lines ignored.
public enum JSONLines {
    public static func decode<Element: Decodable>(_ type: Element.Type, from data: Data) throws -> [Element] {
        try String(decoding: data, as: UTF8.self).split(separator: "\n").filter {
            !$0.trimmingCharacters(in: .whitespaces).isEmpty
        }.map { try JSONDecoder().decode(Element.self, from: Data($0.utf8)) }
    }
}
