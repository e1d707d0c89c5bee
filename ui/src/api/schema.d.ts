// Generated from ui/openapi.json by scripts/gen-types.mjs; do not edit.
// openapi-sha256: 254c001b5dbeab99

export interface paths {
    "/api/attack/status": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Status */
        get: operations["status_api_attack_status_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attention": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Grid */
        post: operations["grid_api_attention_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attention/head": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Head */
        post: operations["head_api_attention_head_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attribution": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Attribution */
        post: operations["attribution_api_attribution_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attribution-graph/build": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Build */
        post: operations["build_api_attribution_graph_build_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attribution-graph/feature/{layer}/{feature}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Feature */
        get: operations["feature_api_attribution_graph_feature__layer___feature__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attribution-graph/intervene": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Intervene */
        post: operations["intervene_api_attribution_graph_intervene_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attribution-graph/prune": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Prune */
        post: operations["prune_api_attribution_graph_prune_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attribution-graph/qk": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Qk */
        post: operations["qk_api_attribution_graph_qk_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attribution-graph/supernodes": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Supernodes */
        post: operations["supernodes_api_attribution_graph_supernodes_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attribution-graph/supernodes/edit": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Edit Supernodes */
        post: operations["edit_supernodes_api_attribution_graph_supernodes_edit_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/attribution-graph/transcoders": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Transcoders */
        get: operations["transcoders_api_attribution_graph_transcoders_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/edits": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List Edits */
        get: operations["list_edits_api_edits_get"];
        put?: never;
        /**
         * Prepare Edit
         * @description Prepare an edit once (ablate: a peft LoRA adapter, hot-swapped per request, attached when the model is
         *     idle and until then applied as its exact hooked form; clamp: the hooked clamp); a client applies it by
         *     naming it in ``interventions.edits``.
         */
        post: operations["prepare_edit_api_edits_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/embeddings/analogy": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Analogy */
        post: operations["analogy_api_embeddings_analogy_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/embeddings/map": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Embedding Map */
        post: operations["embedding_map_api_embeddings_map_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/embeddings/neighbours": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Neighbours */
        post: operations["neighbours_api_embeddings_neighbours_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/export": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Export */
        post: operations["export_api_export_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/export/{name}.zip": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Download */
        get: operations["download_api_export__name__zip_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/features": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List Saes */
        get: operations["list_saes_api_features_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/features/{sae}/contrast": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Contrast */
        post: operations["contrast_api_features__sae__contrast_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/features/{sae}/feature/{feature}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Detail */
        get: operations["detail_api_features__sae__feature__feature__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/features/{sae}/label": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        /** Set Label */
        put: operations["set_label_api_features__sae__label_put"];
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/features/{sae}/prompt": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** On Prompt */
        post: operations["on_prompt_api_features__sae__prompt_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/features/{sae}/table": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Table */
        get: operations["table_api_features__sae__table_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/generate": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Generate */
        post: operations["generate_api_generate_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/graphs/circuit": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Circuit */
        post: operations["circuit_api_graphs_circuit_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/graphs/feature/{layer}/{feature}": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Feature */
        get: operations["feature_api_graphs_feature__layer___feature__get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/graphs/provenance": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Provenance */
        post: operations["provenance_api_graphs_provenance_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/graphs/suite": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Suite */
        get: operations["suite_api_graphs_suite_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/graphs/top-features": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Top Features */
        post: operations["top_features_api_graphs_top_features_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/health": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Health */
        get: operations["health_api_health_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/lens": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Lens */
        post: operations["lens_api_lens_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/model": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Model Info */
        get: operations["model_info_api_model_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/prepare": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Prepare Status */
        get: operations["prepare_status_api_prepare_get"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/residual": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Residual */
        post: operations["residual_api_residual_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/run": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Run */
        post: operations["run_api_run_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/api/steering/vectors": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** List Vectors */
        get: operations["list_vectors_api_steering_vectors_get"];
        put?: never;
        /** Create Vector */
        post: operations["create_vector_api_steering_vectors_post"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /** ActiveFeature */
        ActiveFeature: {
            /** Activation */
            activation: number;
            /** Feature */
            feature: number;
            /** Label */
            label: string | null;
            /** Top Tokens */
            top_tokens: string[];
        };
        /** AnalogyRequest */
        AnalogyRequest: {
            /**
             * A
             * @description a word as typed
             */
            a: string;
            /**
             * B
             * @description a word as typed
             */
            b: string;
            /**
             * C
             * @description a word as typed
             */
            c: string;
            /** Expected */
            expected?: string | null;
            /**
             * K
             * @default 10
             */
            k: number;
            /**
             * Matrix
             * @default W_E
             * @enum {string}
             */
            matrix: "W_E" | "W_U";
        };
        /** AnalogyResponse */
        AnalogyResponse: {
            a: components["schemas"]["WordInfo"];
            b: components["schemas"]["WordInfo"];
            c: components["schemas"]["WordInfo"];
            expected: components["schemas"]["WordInfo"] | null;
            /** Expected Cosine */
            expected_cosine: number | null;
            /**
             * Expected Rank
             * @description 1-based rank of the expected word among all tokens
             */
            expected_rank: number | null;
            /**
             * Offset Cosine
             * @description cos(a − b, expected − c)
             */
            offset_cosine: number | null;
            /**
             * Ranked
             * @description a − b + c's nearest tokens by cosine; a, b, c left out
             */
            ranked: components["schemas"]["Neighbour"][];
        };
        /** AttackDone */
        AttackDone: {
            /**
             * Reason
             * @enum {string}
             */
            reason: "success" | "budget" | "stopped";
            /**
             * Result
             * @description AttackResult.to_dict(): best_suffix, verified_output, ...
             */
            result: {
                [key: string]: unknown;
            };
            /**
             * Type
             * @default done
             * @constant
             */
            type: "done";
        };
        /** AttackError */
        AttackError: {
            /** Detail */
            detail: string;
            /** Status */
            status: number;
            /**
             * Type
             * @default error
             * @constant
             */
            type: "error";
        };
        /** AttackStart */
        AttackStart: {
            /**
             * Chat
             * @description suffix in the chat template's user turn (null: auto)
             * @default null
             */
            chat: boolean | null;
            /**
             * Max New Tokens
             * @default 24
             */
            max_new_tokens: number;
            /**
             * Method
             * @default gcg
             * @enum {string}
             */
            method: "gcg" | "genetic" | "gradient-free";
            /**
             * Prompt
             * @description the user message the suffix is appended to
             */
            prompt: string;
            /**
             * Seed
             * @default 0
             */
            seed: number;
            /**
             * Steps
             * @default 100
             */
            steps: number;
            /**
             * Suffix Len
             * @default 20
             */
            suffix_len: number;
            /**
             * Target
             * @description what the model's answer must start with
             */
            target: string;
            /**
             * Topk
             * @default 64
             */
            topk: number;
            /**
             * Type
             * @constant
             */
            type: "start";
            /**
             * Width
             * @description candidates per step (genetic: population)
             * @default 64
             */
            width: number;
        };
        /** AttackStarted */
        AttackStarted: {
            /** Chat */
            chat: boolean;
            /** Config */
            config: {
                [key: string]: unknown;
            };
            /** Init Loss */
            init_loss: number;
            /** Init Suffix */
            init_suffix: string;
            /** Rendered Prompt */
            rendered_prompt: string;
            /**
             * Type
             * @default started
             * @constant
             */
            type: "started";
        };
        /** AttackStatus */
        AttackStatus: {
            /** Method */
            method?: string | null;
            /** Running */
            running: boolean;
            /** Step */
            step?: number | null;
            /** Steps */
            steps?: number | null;
        };
        /** AttackStep */
        AttackStep: {
            /** Best Loss */
            best_loss: number;
            /** Best Suffix */
            best_suffix: string;
            /** Candidates */
            candidates: number;
            /**
             * Loss
             * @description lowest loss among this step's candidates
             */
            loss: number;
            /** Matched */
            matched: number;
            /**
             * Output
             * @description greedy output for the best suffix (null: unchanged since last step)
             */
            output: string | null;
            /**
             * Rendered Prompt
             * @description the full prompt text with the best suffix (what Apply uses)
             */
            rendered_prompt: string;
            /** Seconds */
            seconds: number;
            /** Step */
            step: number;
            /**
             * Type
             * @default step
             * @constant
             */
            type: "step";
            /** Verified */
            verified: boolean;
        };
        /** AttackStop */
        AttackStop: {
            /**
             * Type
             * @constant
             */
            type: "stop";
        };
        /** AttentionGridResponse */
        AttentionGridResponse: {
            /** Badges */
            badges: components["schemas"]["HeadBadge"][];
            /** N Heads */
            n_heads: number;
            /** N Layers */
            n_layers: number;
            /**
             * Size
             * @description side of each thumbnail (the pattern is average-pooled when longer)
             */
            size: number;
            /**
             * Thumbs
             * @description [layer][head] -> size*size row-major pattern values
             */
            thumbs: number[][][];
            timings: components["schemas"]["Timings"];
            /** Tokens */
            tokens: string[];
        };
        /** AttributionRequest */
        AttributionRequest: {
            /**
             * All Neurons
             * @description also return every neuron's direct logit attribution (neuron_map)
             * @default false
             */
            all_neurons: boolean;
            interventions?: components["schemas"]["InterventionSpec"];
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
            /**
             * Target
             * @description target token text (default: the top prediction)
             */
            target?: string | null;
        };
        /**
         * AttributionResponse
         * @description neuroscope.analysis.residual.direct_logit_attribution and attribution.gradient_x_input at the last
         *     position: components sum to ``actual``; each layer's heads plus ``attn_bias`` sum to its ``attn`` component
         *     and its neurons plus ``mlp_bias`` to its ``mlp`` component (post-sublayer norms frozen on this run).
         */
        AttributionResponse: {
            /**
             * Actual
             * @description the model's (pre-softcap) logit of the target at the last position
             */
            actual: number;
            /**
             * Attn Bias
             * @description [layer] the attention output bias's term
             */
            attn_bias: number[];
            /**
             * Components
             * @description direct logit attribution of embed (pos_embed), each attn and MLP output (attn{l}, mlp{l}), and the final norm's and unembedding's biases where the model has them
             */
            components: components["schemas"]["Component"][];
            /**
             * Heads
             * @description [layer][head] direct logit attribution of each head
             */
            heads: number[][];
            /**
             * Mlp Bias
             * @description [layer] the MLP output bias's term
             */
            mlp_bias: number[];
            /**
             * Neuron Map
             * @description [layer][neuron] every neuron's term, when all_neurons was asked for
             */
            neuron_map?: number[][] | null;
            /**
             * Neurons
             * @description MLP neurons with the largest direct logit attribution at the last position (neurons of a whole-ablated MLP are left out)
             */
            neurons: components["schemas"]["NeuronScore"][];
            /** Target */
            target: string;
            /** Target Id */
            target_id: number;
            timings: components["schemas"]["Timings"];
            /**
             * Token Scores
             * @description gradient x input of each prompt token on the target logit
             */
            token_scores: number[];
            /** Tokens */
            tokens: string[];
        };
        /** BuildRequest */
        BuildRequest: {
            /**
             * Edge Threshold
             * @default 0.98
             */
            edge_threshold: number;
            /**
             * Max Feature Nodes
             * @default 1000
             */
            max_feature_nodes: number;
            /**
             * Node Threshold
             * @default 0.8
             */
            node_threshold: number;
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
        };
        /** CircuitRequest */
        CircuitRequest: {
            /**
             * Edges
             * @default 200
             */
            edges: number;
            /**
             * Max Pairs
             * @description use only the first pairs (faster)
             */
            max_pairs?: number | null;
            /**
             * Random Draws
             * @default 3
             */
            random_draws: number;
            /** Sizes */
            sizes?: number[] | null;
            /**
             * Steps
             * @default 5
             */
            steps: number;
            /**
             * Task
             * @description a task shipped with NeuroScope
             * @default ioi
             */
            task: string;
        };
        /** CollapsedEdge */
        CollapsedEdge: {
            /** Source */
            source: string;
            /** Target */
            target: string;
            /** Weight */
            weight: number;
        };
        /** Component */
        Component: {
            /** Label */
            label: string;
            /** Value */
            value: number;
        };
        /** Context */
        Context: {
            /**
             * Activation
             * @description the recorded activation at the centre token
             */
            activation: number;
            /**
             * Acts
             * @description activation on each token of the window (re-run behind a BOS)
             */
            acts: number[];
            /** Center */
            center: number;
            /** Tokens */
            tokens: string[];
        };
        /** ContrastRequest */
        ContrastRequest: {
            /** Negative */
            negative: string[];
            /** Positive */
            positive: string[];
            /**
             * Top
             * @default 20
             */
            top: number;
        };
        /** ContrastResponse */
        ContrastResponse: {
            /** Features */
            features: components["schemas"]["ContrastRow"][];
            /** Hook */
            hook: string;
            /** N Heldout */
            n_heldout: {
                [key: string]: number;
            };
            /** N Negative */
            n_negative: number;
            /** N Positive */
            n_positive: number;
            /** N Train */
            n_train: {
                [key: string]: number;
            };
        };
        /** ContrastRow */
        ContrastRow: {
            /** Auroc */
            auroc: number;
            /** Auroc Train */
            auroc_train: number;
            /** Ci High */
            ci_high: number;
            /** Ci Low */
            ci_low: number;
            /** Feature */
            feature: number;
            /** Label */
            label?: string | null;
            /** Mean Diff */
            mean_diff: number;
            /** Mean Diff Train */
            mean_diff_train: number;
            /** Mean Negative */
            mean_negative: number;
            /** Mean Positive */
            mean_positive: number;
        };
        /** CreateVectorRequest */
        CreateVectorRequest: {
            /** Layer */
            layer: number;
            /** Name */
            name: string;
            /** Negative */
            negative: string[];
            /** Positive */
            positive: string[];
        };
        /** EditList */
        EditList: {
            /** Edits */
            edits: components["schemas"]["LiveEditInfo"][];
        };
        /** EditRequest */
        EditRequest: {
            /** Features */
            features: number[];
            /**
             * Method
             * @default ablate
             * @enum {string}
             */
            method: "ablate" | "clamp";
            /**
             * Rank
             * @default 8
             */
            rank: number;
            /** Sae */
            sae: string;
            /** Value */
            value?: number | null;
        };
        /**
         * EffectsRequest
         * @description The top features by causal effect on the organism's response for one prompt (the current prompt).
         */
        EffectsRequest: {
            /**
             * Id
             * @default null
             */
            id: number | string | null;
            /**
             * Prompt
             * @description plain prompt holding the trigger (null: the first held-out one)
             * @default null
             */
            prompt: string | null;
            /**
             * Top
             * @default 10
             */
            top: number;
            /**
             * Type
             * @default effects
             * @constant
             */
            type: "effects";
        };
        /** EmbeddingMapRequest */
        EmbeddingMapRequest: {
            /**
             * Matrix
             * @default W_E
             * @enum {string}
             */
            matrix: "W_E" | "W_U";
            /**
             * Threshold
             * @description cluster merge cosine (default: cut at the widest gap)
             */
            threshold?: number | null;
            /** Words */
            words: string[];
        };
        /** EmbeddingMapResponse */
        EmbeddingMapResponse: {
            /**
             * Clusters
             * @description similarity cluster of each word (average linkage)
             */
            clusters: number[];
            /**
             * Coords
             * @description [word] -> [pc1, pc2, pc3]
             */
            coords: number[][];
            /** Explained Variance Ratio */
            explained_variance_ratio: number[];
            /** Matrix */
            matrix: string;
            /**
             * Similarity
             * @description [word][word] cosine similarity
             */
            similarity: number[][];
            /** Words */
            words: components["schemas"]["WordInfo"][];
        };
        /** ErrorResponse */
        ErrorResponse: {
            /** Detail */
            detail: string;
        };
        /** EvalEffects */
        EvalEffects: {
            /** Id */
            id: number | string | null;
            /**
             * Result
             * @description PromptEffects.to_dict(): features ranked by effect
             */
            result: {
                [key: string]: unknown;
            };
            /** Seconds */
            seconds: number;
            /**
             * Type
             * @default effects
             * @constant
             */
            type: "effects";
        };
        /** EvalError */
        EvalError: {
            /** Detail */
            detail: string;
            /**
             * Id
             * @default null
             */
            id: number | string | null;
            /** Status */
            status: number;
            /**
             * Type
             * @default error
             * @constant
             */
            type: "error";
        };
        /** EvalProgress */
        EvalProgress: {
            /** Done */
            done: number;
            /** Id */
            id: number | string | null;
            /** Total */
            total: number;
            /**
             * Type
             * @default progress
             * @constant
             */
            type: "progress";
        };
        /**
         * EvalPrompts
         * @description A user's prompt set, as in a prompt file ``{"triggered": [...], "clean": [...]}``.
         */
        EvalPrompts: {
            /** Clean */
            clean?: string[];
            /**
             * Response
             * @description the text whose appearance is an attack (default: the organism's)
             * @default null
             */
            response: string | null;
            /** Triggered */
            triggered?: string[];
        };
        /** EvalReady */
        EvalReady: {
            /**
             * Prompts
             * @description the default prompt set (null: none; send your own)
             */
            prompts: {
                [key: string]: unknown;
            } | null;
            /**
             * Type
             * @default ready
             * @constant
             */
            type: "ready";
        };
        /** EvalResult */
        EvalResult: {
            /** Id */
            id: number | string | null;
            /**
             * Result
             * @description PanelResult.to_dict(): asr, clean_agreement, false_trigger, ...
             */
            result: {
                [key: string]: unknown;
            };
            /** Seconds */
            seconds: number;
            /**
             * Type
             * @default result
             * @constant
             */
            type: "result";
        };
        /** EvaluateRequest */
        EvaluateRequest: {
            /**
             * Batch Size
             * @default 8
             */
            batch_size: number;
            /**
             * Edits
             * @description prepared edit names
             */
            edits?: string[];
            /**
             * Id
             * @default null
             */
            id: number | string | null;
            /**
             * Max New Tokens
             * @default 16
             */
            max_new_tokens: number;
            /**
             * @description null: the organism's held-out prompts
             * @default null
             */
            prompts: components["schemas"]["EvalPrompts"] | null;
            /**
             * Type
             * @default evaluate
             * @constant
             */
            type: "evaluate";
        };
        /** ExportRequest */
        ExportRequest: {
            /** Edits */
            edits?: string[];
            /** Name */
            name: string;
            /** Saes */
            saes?: string[];
        };
        /** ExportResponse */
        ExportResponse: {
            /**
             * Download
             * @description URL of a zip of the bundle
             */
            download: string;
            /** Edits */
            edits: string[];
            /** Name */
            name: string;
            /**
             * Path
             * @description the bundle folder inside the workspace
             */
            path: string;
            /** Saes */
            saes: string[];
        };
        /** FeatureChange */
        FeatureChange: {
            /** After */
            after: number;
            /** Before */
            before: number;
            /** Feature */
            feature: number;
            /** Id */
            id: string;
            /** Layer */
            layer: number;
            /** Pos */
            pos: number;
        };
        /** FeatureContext */
        FeatureContext: {
            /** Activation */
            activation: number;
            /** Center */
            center: number;
            /** Tokens */
            tokens: string[];
        };
        /** FeatureDetail */
        FeatureDetail: {
            /**
             * Cloud
             * @description tokens it fires on, weighted by activation mass
             */
            cloud: components["schemas"]["TokenWeight"][];
            /** Contexts */
            contexts: components["schemas"]["Context"][];
            histogram: components["schemas"]["Histogram"] | null;
            /** Hook */
            hook: string;
            /** Id */
            id: number;
            /** Label */
            label: string | null;
            logits: components["schemas"]["LogitEffects"];
            /** Sae */
            sae: string;
            stats: components["schemas"]["FeatureStats"] | null;
        };
        /** FeatureRow */
        FeatureRow: {
            /** Density */
            density: number | null;
            /** Id */
            id: number;
            /** Label */
            label?: string | null;
            /** Max Activation */
            max_activation: number | null;
            /** Mean Activation */
            mean_activation: number | null;
            /** Top Tokens */
            top_tokens: string[];
        };
        /** FeatureStats */
        FeatureStats: {
            /** Density */
            density: number;
            /** Max Activation */
            max_activation: number;
            /** Mean Activation */
            mean_activation: number;
        };
        /** GenerateRequest */
        GenerateRequest: {
            interventions?: components["schemas"]["InterventionSpec"];
            /**
             * Max New Tokens
             * @default 20
             */
            max_new_tokens: number;
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
            /**
             * Seed
             * @default 0
             */
            seed: number;
            /**
             * Temperature
             * @default 0
             */
            temperature: number;
        };
        /** GenerateResponse */
        GenerateResponse: {
            /**
             * Baseline
             * @description the plain continuation (null when there are no interventions)
             */
            baseline: string | null;
            /**
             * Text
             * @description continuation with the interventions active at every step
             */
            text: string;
            timings: components["schemas"]["Timings"];
        };
        /** GraphBand */
        GraphBand: {
            /** Band */
            band: number;
            /** Label */
            label: string;
        };
        /**
         * GraphDocument
         * @description The graph JSON every graph view draws; the same document ``--json`` writes (graph.schema.json).
         */
        GraphDocument: {
            /** Bands */
            bands: components["schemas"]["GraphBand"][];
            /** Edges */
            edges: components["schemas"]["GraphEdge"][];
            /**
             * Kind
             * @enum {string}
             */
            kind: "provenance" | "circuit" | "attribution";
            /** Meta */
            meta: {
                [key: string]: unknown;
            };
            /** Model */
            model: string;
            /** Nodes */
            nodes: components["schemas"]["GraphNode"][];
            /**
             * Schema
             * @description neuroscope-graph/1
             */
            schema: string;
            /** Title */
            title: string;
            /** Tokens */
            tokens: string[] | null;
        };
        /** GraphEdge */
        GraphEdge: {
            /** Path */
            path: string;
            /** Source */
            source: string;
            /** Target */
            target: string;
            /** Weight */
            weight: number;
        };
        /** GraphNode */
        GraphNode: {
            /** Activation */
            activation?: number | null;
            /**
             * Attribution
             * @default 0
             */
            attribution: number;
            /** Band */
            band: number;
            /** Bias */
            bias?: number | null;
            /** Completeness */
            completeness?: number | null;
            /** Error Share */
            error_share?: number | null;
            /** Feature */
            feature?: number | null;
            /** Head */
            head?: number | null;
            /** Id */
            id: string;
            /** Kept Share */
            kept_share?: number | null;
            /** Label */
            label: string;
            /** Layer */
            layer?: number | null;
            /** Pos */
            pos?: number | null;
            /** Source Pos */
            source_pos?: number | null;
            /** Top Tokens */
            top_tokens?: string[];
            /**
             * Type
             * @enum {string}
             */
            type: "feature" | "error" | "head" | "mlp" | "token" | "embed" | "logits";
            /** Value */
            value?: number | null;
        } & {
            [key: string]: unknown;
        };
        /** GraphReply */
        GraphReply: {
            /**
             * Graph
             * @description the pruned attribution graph document
             */
            graph: {
                [key: string]: unknown;
            };
            /** Graph Id */
            graph_id: string;
        };
        /** HeadBadge */
        HeadBadge: {
            /** Head */
            head: number;
            /**
             * Kind
             * @description previous-token | induction | duplicate-token | first-token | self
             */
            kind: string;
            /** Layer */
            layer: number;
            /** Score */
            score: number;
            /**
             * Source
             * @description classifier: neuroscope.analysis.attention on random repeated tokens; prompt: the same scores and thresholds on this prompt's patterns (used when the classifier labels no head)
             */
            source: string;
        };
        /** HeadRequest */
        HeadRequest: {
            /** Head */
            head: number;
            /** Layer */
            layer: number;
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
        };
        /** HeadResponse */
        HeadResponse: {
            /** Head */
            head: number;
            /** Layer */
            layer: number;
            /**
             * Pattern
             * @description [query][key] attention probabilities
             */
            pattern: number[][];
            /** Tokens */
            tokens: string[];
        };
        /** Histogram */
        Histogram: {
            /** Bin */
            bin: number | null;
            /** Counts */
            counts: number[];
            /** Dead */
            dead: number;
            /** Density */
            density: number;
            /** Edges */
            edges: number[];
        };
        /** InterveneReply */
        InterveneReply: {
            /** Applied */
            applied: {
                [key: string]: unknown;
            }[];
            /**
             * Downstream
             * @description graph feature nodes whose activation changed
             */
            downstream: components["schemas"]["FeatureChange"][];
            /** Graph Id */
            graph_id: string;
            /** Logit Nodes */
            logit_nodes: components["schemas"]["LogitChange"][];
            /** Tokens */
            tokens: string[];
            /** Top After */
            top_after: components["schemas"]["TopToken"][];
            /** Top Before */
            top_before: components["schemas"]["TopToken"][];
        };
        /** InterveneRequest */
        InterveneRequest: {
            /**
             * Freeze
             * @description hold attention patterns and norm scales (the graph's linearisation)
             * @default false
             */
            freeze: boolean;
            /**
             * Graph Id
             * @description from /build
             */
            graph_id: string;
            /** Interventions */
            interventions: components["schemas"]["NodeInterventionModel"][];
            /** @description needed when naming supernodes */
            spec?: components["schemas"]["SupernodeSpecModel"] | null;
            /**
             * Top K
             * @default 10
             */
            top_k: number;
        };
        /** InterventionRequest */
        InterventionRequest: {
            interventions?: components["schemas"]["InterventionSpec"];
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
        };
        /**
         * InterventionSpec
         * @description Zero-ablations and steering, applied together (heads at attn.hook_z, neurons at mlp.hook_post).
         */
        InterventionSpec: {
            /**
             * Edits
             * @description prepared feature edits (POST /api/edits), active for this request only
             */
            edits?: string[];
            /**
             * Heads
             * @description [layer, head] pairs
             */
            heads?: [
                number,
                number
            ][];
            /**
             * Mlps
             * @description layers whose whole MLP output is zeroed
             */
            mlps?: number[];
            /**
             * Neurons
             * @description [layer, neuron] pairs
             */
            neurons?: [
                number,
                number
            ][];
            steer?: components["schemas"]["SteerSpec"] | null;
        };
        /** LabelRequest */
        LabelRequest: {
            /** Feature */
            feature: number;
            /**
             * Label
             * @description empty removes the label
             */
            label: string;
        };
        /** LabelResponse */
        LabelResponse: {
            /** Feature */
            feature: number;
            /** Label */
            label: string | null;
            /** Sae */
            sae: string;
        };
        /** LensResponse */
        LensResponse: {
            /**
             * Layers
             * @description row labels: embed, then each layer's resid_post
             */
            layers: string[];
            /** Probs */
            probs: number[][];
            timings: components["schemas"]["Timings"];
            /** Tokens */
            tokens: string[];
            /** Top Ids */
            top_ids: number[][];
            /**
             * Top Tokens
             * @description [row][position] most likely next token
             */
            top_tokens: string[][];
        };
        /** Limits */
        Limits: {
            /** Max Body Bytes */
            max_body_bytes: number;
            /** Max New Tokens */
            max_new_tokens: number;
            /** Max Prompt Chars */
            max_prompt_chars: number;
            /** Max Prompt Tokens */
            max_prompt_tokens: number;
        };
        /** LiveEditInfo */
        LiveEditInfo: {
            /** Exact */
            exact?: boolean | null;
            /** Features */
            features?: number[] | null;
            /** First Layer */
            first_layer: number;
            /** Inexact Reasons */
            inexact_reasons?: string[] | null;
            /**
             * Kind
             * @enum {string}
             */
            kind: "lora" | "hooked";
            /** Method */
            method?: string | null;
            /**
             * Name
             * @description put this name in interventions.edits to apply the edit to a request
             */
            name: string;
            /** Sae */
            sae?: string | null;
            /** Value */
            value?: number | null;
        };
        /** LogitChange */
        LogitChange: {
            /** After */
            after: number;
            /** Before */
            before: number;
            /** Id */
            id: string;
            /** Token Id */
            token_id: number;
        };
        /** LogitEffects */
        LogitEffects: {
            /** Promoted */
            promoted: components["schemas"]["TokenValue"][];
            /** Suppressed */
            suppressed: components["schemas"]["TokenValue"][];
        };
        /** ModelInfo */
        ModelInfo: {
            /** D Mlp */
            d_mlp: number;
            /** D Model */
            d_model: number;
            /** D Vocab */
            d_vocab: number;
            limits: components["schemas"]["Limits"];
            /** Model Type */
            model_type: string;
            /** N Ctx */
            n_ctx: number;
            /** N Heads */
            n_heads: number;
            /** N Kv Heads */
            n_kv_heads: number;
            /** N Layers */
            n_layers: number;
            /** Name */
            name: string;
            /**
             * Web
             * @description an ONNX split export is served at /web/ (neuroscope ui --onnx)
             * @default false
             */
            web: boolean;
        };
        /** Neighbour */
        Neighbour: {
            /** Cosine */
            cosine: number;
            /** Token */
            token: string;
            /** Token Id */
            token_id: number;
        };
        /** NeighboursRequest */
        NeighboursRequest: {
            /**
             * K
             * @default 10
             */
            k: number;
            /**
             * Matrix
             * @default W_E
             * @enum {string}
             */
            matrix: "W_E" | "W_U";
            /**
             * Word
             * @description a word as typed
             */
            word: string;
        };
        /** NeighboursResponse */
        NeighboursResponse: {
            /** Neighbours */
            neighbours: components["schemas"]["Neighbour"][];
            word: components["schemas"]["WordInfo"];
        };
        /** NeuronScore */
        NeuronScore: {
            /** Activation */
            activation: number;
            /** Layer */
            layer: number;
            /** Neuron */
            neuron: number;
            /**
             * Value
             * @description direct effect on the target logit (activation x output row, through the frozen norms, . unembedding)
             */
            value: number;
        };
        /** NextToken */
        NextToken: {
            /** Base Logit */
            base_logit: number;
            /** Base Prob */
            base_prob: number;
            /** Delta Logit */
            delta_logit: number;
            /** Delta Prob */
            delta_prob: number;
            /** Logit */
            logit: number;
            /** Prob */
            prob: number;
            /** Token */
            token: string;
            /** Token Id */
            token_id: number;
        };
        /** NodeInterventionModel */
        NodeInterventionModel: {
            /**
             * Mode
             * @default ablate
             * @enum {string}
             */
            mode: "ablate" | "scale" | "add" | "set";
            /**
             * Node
             * @description f_L_P_F (feature), e_L_P (error), or a supernode id of `spec`
             */
            node: string;
            /**
             * Value
             * @default 0
             */
            value: number;
        };
        /** PcaTrajectory */
        PcaTrajectory: {
            /** Baseline Points */
            baseline_points: number[][] | null;
            /** Explained */
            explained: number[];
            /** Labels */
            labels: string[];
            /**
             * Points
             * @description [row] -> [pc1, pc2, pc3] of the last token's residual
             */
            points: number[][];
        };
        /** PrepareStatus */
        PrepareStatus: {
            /** Elapsed S */
            elapsed_s?: number | null;
            /** Feature Layer */
            feature_layer?: number | null;
            /**
             * Fraction
             * @description the whole preparation's share done, 0..1
             */
            fraction?: number | null;
            /** Layers */
            layers?: number[];
            /**
             * Message
             * @description why it failed, or where the suite came from
             */
            message?: string | null;
            /**
             * Notices
             * @description e.g. why a cached suite was rebuilt
             */
            notices?: string[];
            /**
             * Path
             * @description the cached suite's folder
             */
            path?: string | null;
            /**
             * Sae
             * @description the Features view's name for the prepared SAE
             */
            sae?: string | null;
            /**
             * Stage
             * @description what it does now, e.g. 'record train', 'train L14'
             */
            stage?: string | null;
            /**
             * State
             * @description off: not preparing (--no-prepare, or SAEs were given); ready: attached
             * @enum {string}
             */
            state: "off" | "checking" | "waiting" | "running" | "ready" | "failed";
        };
        /** PromptActs */
        PromptActs: {
            /** Active */
            active: components["schemas"]["ActiveFeature"][] | null;
            /** Acts */
            acts: number[] | null;
            /** Position */
            position: number | null;
            /** Tokens */
            tokens: string[];
        };
        /** PromptActsRequest */
        PromptActsRequest: {
            /** Feature */
            feature?: number | null;
            /**
             * K
             * @default 20
             */
            k: number;
            /** Position */
            position?: number | null;
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
        };
        /** PromptRequest */
        PromptRequest: {
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
        };
        /** ProvenanceRequest */
        ProvenanceRequest: {
            /**
             * Coverage
             * @default 0.8
             */
            coverage: number;
            /**
             * Depth
             * @description layers upstream (1..4; others get a 422 naming the range)
             * @default 2
             */
            depth: number;
            /** Feature */
            feature: number;
            /**
             * Fold Identity
             * @default true
             */
            fold_identity: boolean;
            /** Layer */
            layer: number;
            /**
             * Max Expand
             * @default 8
             */
            max_expand: number;
            /**
             * Max Parents
             * @default 10
             */
            max_parents: number;
            /**
             * Position
             * @description token position; -1 = last
             * @default -1
             */
            position: number;
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
        };
        /** PruneRequest */
        PruneRequest: {
            /**
             * Edge Threshold
             * @default 0.98
             */
            edge_threshold: number;
            /**
             * Graph Id
             * @description from /build
             */
            graph_id: string;
            /**
             * Node Threshold
             * @default 0.8
             */
            node_threshold: number;
        };
        /** QKNode */
        QKNode: {
            /** Activation */
            activation?: number | null;
            /** Feature */
            feature?: number | null;
            /** Id */
            id: string;
            /** Kind */
            kind: string;
            /** Layer */
            layer?: number | null;
            /** Pos */
            pos?: number | null;
            /**
             * Total
             * @description this node's share of the score (summed over the other side)
             */
            total: number;
        };
        /** QKPair */
        QKPair: {
            /** Key */
            key: string;
            /** Query */
            query: string;
            /** Value */
            value: number;
        };
        /** QKReply */
        QKReply: {
            /** Head */
            head: number;
            /** Key Nodes */
            key_nodes: components["schemas"]["QKNode"][];
            /** Key Pos */
            key_pos: number;
            /** Kv Head */
            kv_head: number;
            /** Layer */
            layer: number;
            /** N Key Nodes */
            n_key_nodes: number;
            /** N Query Nodes */
            n_query_nodes: number;
            /**
             * Pair Sum
             * @description sum of every (query node, key node) pair: equals score
             */
            pair_sum: number;
            /** Pattern */
            pattern: number;
            /** Query Nodes */
            query_nodes: components["schemas"]["QKNode"][];
            /** Query Pos */
            query_pos: number;
            /** Scale */
            scale: number;
            /**
             * Score
             * @description the head's pre-softmax score (before any soft-cap)
             */
            score: number;
            /** Softcap */
            softcap: number | null;
            /** Tokens */
            tokens: string[];
            /** Top Pairs */
            top_pairs: components["schemas"]["QKPair"][];
        };
        /** QKRequest */
        QKRequest: {
            /** Head */
            head: number;
            /**
             * Key Pos
             * @description token position; negative = from the end
             * @default 0
             */
            key_pos: number;
            /** Layer */
            layer: number;
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
            /**
             * Query Pos
             * @description token position; negative = from the end
             * @default -1
             */
            query_pos: number;
            /**
             * Top
             * @default 20
             */
            top: number;
        };
        /** ResidualResponse */
        ResidualResponse: {
            /** Baseline Norms */
            baseline_norms: number[][] | null;
            /** Labels */
            labels: string[];
            /**
             * Norms
             * @description [row][position] L2 norm of the residual stream
             */
            norms: number[][];
            pca: components["schemas"]["PcaTrajectory"];
            timings: components["schemas"]["Timings"];
            /** Tokens */
            tokens: string[];
        };
        /** RunRequest */
        RunRequest: {
            interventions?: components["schemas"]["InterventionSpec"];
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
            /**
             * Top K
             * @default 10
             */
            top_k: number;
        };
        /** RunResponse */
        RunResponse: {
            /**
             * Baseline
             * @description top-k next tokens of the plain run
             */
            baseline: components["schemas"]["TokenProb"][];
            /**
             * Kl
             * @description KL(plain || intervened) of the next-token distribution, nats
             */
            kl: number;
            timings: components["schemas"]["Timings"];
            /** Token Ids */
            token_ids: number[];
            /** Tokens */
            tokens: string[];
            /**
             * Top
             * @description top-k next tokens with the interventions, with deltas vs the plain run
             */
            top: components["schemas"]["NextToken"][];
        };
        /** SAEInfo */
        SAEInfo: {
            /** Architecture */
            architecture: string;
            /** D In */
            d_in: number;
            /**
             * Has Features
             * @description a feature store (density, contexts, top tokens) is attached
             */
            has_features: boolean;
            /** Hook */
            hook: string;
            /** K */
            k: number | null;
            /** Layer */
            layer: number;
            /** Name */
            name: string;
            /** Source */
            source: string;
            /** Width */
            width: number;
        };
        /** SAEList */
        SAEList: {
            /** Saes */
            saes: components["schemas"]["SAEInfo"][];
            /** Workspace */
            workspace: string;
        };
        /** SteerSpec */
        SteerSpec: {
            /**
             * Alpha
             * @default 1
             */
            alpha: number;
            /**
             * Layer
             * @description residual stream layer (default: the vector's own layer)
             */
            layer?: number | null;
            /**
             * Vector
             * @description name of a saved steering vector
             */
            vector: string;
        };
        /** SteeringVector */
        SteeringVector: {
            /** Layer */
            layer: number;
            /** Name */
            name: string;
            /** Norm */
            norm: number;
            /** Source */
            source: string;
        };
        /** SteeringVectorList */
        SteeringVectorList: {
            /** Vectors */
            vectors: components["schemas"]["SteeringVector"][];
        };
        /** SuiteFeature */
        SuiteFeature: {
            /** Contexts */
            contexts?: components["schemas"]["FeatureContext"][];
            /** Density */
            density?: number | null;
            /** Feature */
            feature: number;
            /** Has Store */
            has_store: boolean;
            /** Layer */
            layer: number;
            /** Logit Bottom Tokens */
            logit_bottom_tokens?: string[];
            /** Logit Top Tokens */
            logit_top_tokens?: string[];
            /** Max Activation */
            max_activation?: number | null;
            /** Mean Activation */
            mean_activation?: number | null;
            /** Top Tokens */
            top_tokens?: string[];
        };
        /** SuiteInfo */
        SuiteInfo: {
            /** D Sae */
            d_sae: {
                [key: string]: number;
            };
            /** Has Features */
            has_features: {
                [key: string]: boolean;
            };
            /** Hook */
            hook: string;
            /** Layers */
            layers: number[];
            /** Model */
            model: string;
            /** Path */
            path: string;
        };
        /** SupernodeEdit */
        SupernodeEdit: {
            /**
             * Id
             * @description split / rename: the supernode
             */
            id?: string | null;
            /**
             * Ids
             * @description merge: supernode ids
             */
            ids?: string[] | null;
            /**
             * Members
             * @description split: nodes to move out
             */
            members?: string[] | null;
            /** Name */
            name?: string | null;
            /**
             * Node
             * @description move: the node
             */
            node?: string | null;
            /**
             * Op
             * @enum {string}
             */
            op: "merge" | "split" | "rename" | "move";
            /**
             * To
             * @description move: the supernode (null: out of every supernode)
             */
            to?: string | null;
        };
        /** SupernodeEditRequest */
        SupernodeEditRequest: {
            /**
             * Edge Threshold
             * @default 0.98
             */
            edge_threshold: number;
            edit: components["schemas"]["SupernodeEdit"];
            /**
             * Graph Id
             * @description from /build
             */
            graph_id: string;
            /**
             * Node Threshold
             * @description the view's pruning (for the collapsed edges)
             * @default 0.8
             */
            node_threshold: number;
            spec: components["schemas"]["SupernodeSpecModel"];
        };
        /** SupernodeGroup */
        SupernodeGroup: {
            /** Id */
            id: string;
            /** Members */
            members: string[];
            /** Name */
            name: string;
        };
        /** SupernodeSpecModel */
        SupernodeSpecModel: {
            /** Groups */
            groups: components["schemas"]["SupernodeGroup"][];
        };
        /** SupernodesReply */
        SupernodesReply: {
            /**
             * Edges
             * @description the graph's edges with each supernode collapsed
             */
            edges: components["schemas"]["CollapsedEdge"][];
            /** Graph Id */
            graph_id: string;
            spec: components["schemas"]["SupernodeSpecModel"];
        };
        /** SupernodesRequest */
        SupernodesRequest: {
            /**
             * Edge Threshold
             * @default 0.98
             */
            edge_threshold: number;
            /**
             * Graph Id
             * @description from /build
             */
            graph_id: string;
            /**
             * Node Threshold
             * @description the view's pruning: group what it shows
             * @default 0.8
             */
            node_threshold: number;
            /**
             * Role Weight
             * @default 0.5
             */
            role_weight: number;
            /**
             * Threshold
             * @default 0.6
             */
            threshold: number;
        };
        /** TablePage */
        TablePage: {
            /** Offset */
            offset: number;
            /** Rows */
            rows: components["schemas"]["FeatureRow"][];
            /**
             * Total
             * @description features matching the search
             */
            total: number;
        };
        /** Timings */
        Timings: {
            /**
             * Batch Size
             * @description requests (from any clients) served by the same forward
             * @default 1
             */
            batch_size: number;
            /**
             * Cached Baseline
             * @description the plain run of this prompt came from the cache
             */
            cached_baseline: boolean;
            /**
             * Compute Ms
             * @description time on the model worker
             */
            compute_ms: number;
            /**
             * First Layer
             * @description first intervened layer; layers below it were reused from the cache
             */
            first_layer: number | null;
            /**
             * Queue Ms
             * @description waiting for the model worker
             */
            queue_ms: number;
            /**
             * Recomputed Layers
             * @description decoder layers run for this request
             */
            recomputed_layers: number;
            /**
             * Total Ms
             * @description request received to reply ready
             * @default 0
             */
            total_ms: number;
        };
        /** TokenEffect */
        TokenEffect: {
            /** Token */
            token: string;
            /** Value */
            value: number;
        };
        /** TokenProb */
        TokenProb: {
            /** Logit */
            logit: number;
            /** Prob */
            prob: number;
            /** Token */
            token: string;
            /** Token Id */
            token_id: number;
        };
        /** TokenValue */
        TokenValue: {
            /** Token */
            token: string;
            /** Value */
            value: number;
        };
        /** TokenWeight */
        TokenWeight: {
            /** Token */
            token: string;
            /** Weight */
            weight: number;
        };
        /** TopFeature */
        TopFeature: {
            /** Activation */
            activation: number;
            /** Feature */
            feature: number;
            /** Top Tokens */
            top_tokens: string[];
        };
        /** TopFeaturesRequest */
        TopFeaturesRequest: {
            /**
             * K
             * @default 10
             */
            k: number;
            /** Layer */
            layer: number;
            /**
             * Position
             * @default -1
             */
            position: number;
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
        };
        /** TopFeaturesResponse */
        TopFeaturesResponse: {
            /** Features */
            features: components["schemas"]["TopFeature"][];
            /** Layer */
            layer: number;
            /** Position */
            position: number;
            /** Tokens */
            tokens: string[];
        };
        /** TopToken */
        TopToken: {
            /** Logit */
            logit: number;
            /** Prob */
            prob: number;
            /** Token */
            token: string;
            /** Token Id */
            token_id: number;
        };
        /** TranscoderFeatureDetail */
        TranscoderFeatureDetail: {
            /**
             * Activations
             * @description the feature's activation at each of them
             */
            activations: number[] | null;
            /**
             * Contexts
             * @description top activating contexts (≤ 8)
             */
            contexts?: components["schemas"]["FeatureContext"][];
            /** D Tc */
            d_tc: number;
            /** Density */
            density?: number | null;
            /** Feature */
            feature: number;
            /**
             * Has Store
             * @description the transcoder folder has a feature store for this layer
             */
            has_store: boolean;
            /** Layer */
            layer: number;
            /** Max Activation */
            max_activation?: number | null;
            /** Mean Activation */
            mean_activation?: number | null;
            /**
             * Promoted
             * @description tokens W_dec[f] @ W_U raises most (no final norm)
             */
            promoted: components["schemas"]["TokenEffect"][];
            /** Suppressed */
            suppressed: components["schemas"]["TokenEffect"][];
            /**
             * Tokens
             * @description the graph's tokens (with graph_id)
             */
            tokens: string[] | null;
            /** Top Tokens */
            top_tokens?: string[];
        };
        /** TranscodersInfo */
        TranscodersInfo: {
            /** Available */
            available: boolean;
            /** D Tc */
            d_tc: {
                [key: string]: number;
            };
            /**
             * Detail
             * @description why there are none (null when available)
             */
            detail: string | null;
            /** Layers */
            layers: number[];
            /** Model */
            model: string | null;
            /** Path */
            path: string | null;
        };
        /** WordInfo */
        WordInfo: {
            /** Multi Token */
            multi_token: boolean;
            /** Text */
            text: string;
            /** Token Ids */
            token_ids: number[];
            /**
             * Tokens
             * @description the token(s) that stand for the word (mean vector when several)
             */
            tokens: string[];
        };
        /** WsError */
        WsError: {
            /** Detail */
            detail: string;
            /** Id */
            id: number | string | null;
            /** Status */
            status: number;
            /**
             * Type
             * @default error
             * @constant
             */
            type: "error";
        };
        /**
         * WsIntervene
         * @description ``/ws/attribution-graph``: an intervention request (a newer one replaces a queued older one).
         */
        WsIntervene: {
            /**
             * Freeze
             * @description hold attention patterns and norm scales (the graph's linearisation)
             * @default false
             */
            freeze: boolean;
            /**
             * Graph Id
             * @description from /build
             */
            graph_id: string;
            /**
             * Id
             * @default null
             */
            id: number | string | null;
            /** Interventions */
            interventions: components["schemas"]["NodeInterventionModel"][];
            /**
             * @description needed when naming supernodes
             * @default null
             */
            spec: components["schemas"]["SupernodeSpecModel"] | null;
            /**
             * Top K
             * @default 10
             */
            top_k: number;
            /**
             * Type
             * @constant
             */
            type: "intervene";
        };
        /** WsInterveneResult */
        WsInterveneResult: {
            /** Applied */
            applied: {
                [key: string]: unknown;
            }[];
            /**
             * Downstream
             * @description graph feature nodes whose activation changed
             */
            downstream: components["schemas"]["FeatureChange"][];
            /** Graph Id */
            graph_id: string;
            /**
             * Id
             * @default null
             */
            id: number | string | null;
            /** Logit Nodes */
            logit_nodes: components["schemas"]["LogitChange"][];
            /** Tokens */
            tokens: string[];
            /** Top After */
            top_after: components["schemas"]["TopToken"][];
            /** Top Before */
            top_before: components["schemas"]["TopToken"][];
            /**
             * Type
             * @default result
             * @constant
             */
            type: "result";
        };
        /** WsRequest */
        WsRequest: {
            /** Id */
            id: number | string;
            interventions?: components["schemas"]["InterventionSpec"];
            /**
             * Prompt
             * @description the prompt text
             */
            prompt: string;
            /**
             * Top K
             * @default 10
             */
            top_k: number;
        };
        /** WsResult */
        WsResult: {
            /**
             * Baseline
             * @description top-k next tokens of the plain run
             */
            baseline: components["schemas"]["TokenProb"][];
            /** Id */
            id: number | string;
            /**
             * Kl
             * @description KL(plain || intervened) of the next-token distribution, nats
             */
            kl: number;
            timings: components["schemas"]["Timings"];
            /** Token Ids */
            token_ids: number[];
            /** Tokens */
            tokens: string[];
            /**
             * Top
             * @description top-k next tokens with the interventions, with deltas vs the plain run
             */
            top: components["schemas"]["NextToken"][];
            /**
             * Type
             * @default result
             * @constant
             */
            type: "result";
        };
        /** WsSuperseded */
        WsSuperseded: {
            /** Id */
            id: number | string;
            /**
             * Type
             * @default superseded
             * @constant
             */
            type: "superseded";
        };
    };
    responses: never;
    parameters: never;
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    status_api_attack_status_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AttackStatus"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    grid_api_attention_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PromptRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AttentionGridResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    head_api_attention_head_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["HeadRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["HeadResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    attribution_api_attribution_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["AttributionRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AttributionResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    build_api_attribution_graph_build_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["BuildRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["GraphReply"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    feature_api_attribution_graph_feature__layer___feature__get: {
        parameters: {
            query?: {
                graph_id?: string | null;
                k?: number;
            };
            header?: never;
            path: {
                layer: number;
                feature: number;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TranscoderFeatureDetail"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    intervene_api_attribution_graph_intervene_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["InterveneRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["InterveneReply"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    prune_api_attribution_graph_prune_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PruneRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["GraphReply"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    qk_api_attribution_graph_qk_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["QKRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["QKReply"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    supernodes_api_attribution_graph_supernodes_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SupernodesRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SupernodesReply"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    edit_supernodes_api_attribution_graph_supernodes_edit_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SupernodeEditRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SupernodesReply"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    transcoders_api_attribution_graph_transcoders_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TranscodersInfo"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    list_edits_api_edits_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EditList"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    prepare_edit_api_edits_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["EditRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["LiveEditInfo"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    analogy_api_embeddings_analogy_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["AnalogyRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AnalogyResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    embedding_map_api_embeddings_map_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["EmbeddingMapRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["EmbeddingMapResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    neighbours_api_embeddings_neighbours_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["NeighboursRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["NeighboursResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    export_api_export_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["ExportRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ExportResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    download_api_export__name__zip_get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                name: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description the bundle as a zip */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/zip": unknown;
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    list_saes_api_features_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SAEList"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    contrast_api_features__sae__contrast_post: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                sae: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["ContrastRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ContrastResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    detail_api_features__sae__feature__feature__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                sae: string;
                feature: number;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["FeatureDetail"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    set_label_api_features__sae__label_put: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                sae: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["LabelRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["LabelResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    on_prompt_api_features__sae__prompt_post: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                sae: string;
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PromptActsRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PromptActs"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    table_api_features__sae__table_get: {
        parameters: {
            query?: {
                offset?: number;
                limit?: number;
                sort?: string;
                descending?: boolean;
                search?: string | null;
            };
            header?: never;
            path: {
                sae: string;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TablePage"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    generate_api_generate_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["GenerateRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["GenerateResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    circuit_api_graphs_circuit_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["CircuitRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["GraphDocument"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    feature_api_graphs_feature__layer___feature__get: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                layer: number;
                feature: number;
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SuiteFeature"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    provenance_api_graphs_provenance_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["ProvenanceRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["GraphDocument"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    suite_api_graphs_suite_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SuiteInfo"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    top_features_api_graphs_top_features_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TopFeaturesRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TopFeaturesResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    health_api_health_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": {
                        [key: string]: unknown;
                    };
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    lens_api_lens_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["InterventionRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["LensResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    model_info_api_model_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ModelInfo"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    prepare_status_api_prepare_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PrepareStatus"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    residual_api_residual_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["InterventionRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ResidualResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    run_api_run_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["RunRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["RunResponse"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    list_vectors_api_steering_vectors_get: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SteeringVectorList"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
    create_vector_api_steering_vectors_post: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["CreateVectorRequest"];
            };
        };
        responses: {
            /** @description Successful Response */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["SteeringVector"];
                };
            };
            /** @description missing or wrong token */
            401: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description unknown resource */
            404: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description request too large */
            413: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
            /** @description invalid input (the message says what and why) */
            422: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ErrorResponse"];
                };
            };
        };
    };
}
